//! `bosun store` options. Names and defaults mirror etcd's flags so that a store member
//! drops in where an etcd member ran.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::limits::{DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TXN_OPS, MAX_REQUEST_BYTES_LIMIT};

/// Options of one store member.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreConfig {
    /// Human-readable name of this member; must match its entry in --initial-cluster.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Directory for the member's data (RocksDB, snapshots).
    #[arg(long, default_value = "default.bosun")]
    pub data_dir: PathBuf,
    /// URLs to listen on for client traffic (etcd v3 gRPC API, /metrics, /health).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: Vec<String>,
    /// This member's client URLs as advertised to the cluster.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub advertise_client_urls: Vec<String>,
    /// URLs to listen on for Raft traffic from peers.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2380")]
    pub listen_peer_urls: Vec<String>,
    /// This member's peer URLs as advertised to the cluster.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2380")]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration: `name=peer-url,name=peer-url,...`.
    #[arg(long, default_value = "default=http://127.0.0.1:2380")]
    pub initial_cluster: String,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Cluster token: members of one cluster share it; it seeds member and cluster IDs.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Largest client request accepted, in bytes (at most 32 MiB).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Most operations in one txn (per compare, success and failure list).
    #[arg(long, default_value_t = DEFAULT_MAX_TXN_OPS)]
    pub max_txn_ops: usize,
    /// Storage quota in bytes; writes fail with NOSPACE beyond it. 0 = default (2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Applied writes between two snapshots (after which the log before them is purged).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Most concurrent HTTP/2 streams (calls, watch and keep-alive streams) on one connection,
    /// on the client and peer ports; a client waits for a stream to end before it opens more.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// How often the member pings a connection (HTTP/2 PING) to find a client or peer that is
    /// gone; 0 = never. Durations as etcd writes them: 500ms, 20s, 5m, 2h.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,
    /// A new connection must complete its handshake (the HTTP/2 preface and first frame, or an
    /// HTTP/1.1 request head) within this time, or it is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// A connection with no call or stream in flight for this long is closed (GOAWAY); 0 =
    /// never. Open watch and lease keep-alive streams keep a connection busy.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_connection_timeout: Duration,
    /// Most connections open at once on each client URL. At the bound, the connection idle the
    /// longest is closed to make room; when none is idle, new ones wait.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_client_connections: u64,
    /// Most connections open at once on each peer URL (members connect once to each other).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_peer_connections: u64,
    /// The kernel's scheduling policy for the member's threads: `batch` (SCHED_BATCH: a
    /// thread woken by a message does not preempt the one running, it waits for the CPU's
    /// next turn), `normal` (SCHED_OTHER, as the process started with), or `auto`: `batch`
    /// when other members of --initial-cluster run on this machine (as for
    /// --worker-threads), `normal` when the member is alone on it.
    #[arg(long, value_enum, default_value_t = SchedulingPolicy::Auto)]
    pub scheduling_policy: SchedulingPolicy,
    /// Testing only: a file listing peer URLs this member must not reach (one per line), read
    /// continually; lets chaos tests cut the network between members.
    #[arg(long, hide = true)]
    pub peer_fault_file: Option<PathBuf>,
}

/// See `--scheduling-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchedulingPolicy {
    Auto,
    Batch,
    Normal,
}

/// Default storage quota, as etcd's.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// One entry of --initial-cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl StoreConfig {
    /// The storage quota in force.
    pub fn quota(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// Parses --initial-cluster; several URLs of one member repeat its name.
    pub fn initial_members(&self) -> anyhow::Result<Vec<InitialMember>> {
        let mut out: Vec<InitialMember> = Vec::new();
        for part in self
            .initial_cluster
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, url) = part
                .split_once('=')
                .with_context(|| format!("--initial-cluster entry {part:?} is not name=url"))?;
            check_url(url)?;
            match out.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_string()),
                None => out.push(InitialMember {
                    name: name.to_string(),
                    peer_urls: vec![url.to_string()],
                }),
            }
        }
        if !out.iter().any(|m| m.name == self.name) {
            bail!(
                "--initial-cluster has no entry for this member's --name {:?}",
                self.name
            );
        }
        Ok(out)
    }

    /// How many members of --initial-cluster run on this machine, this one included: those
    /// with a peer URL on a loopback address or on a host of this member's own peer URLs.
    /// At least 1; members whose URLs cannot be parsed are not counted.
    pub fn members_on_this_machine(&self) -> usize {
        let host = |u: &str| {
            url::Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
        };
        let loopback = |h: &str| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        };
        let Ok(members) = self.initial_members() else {
            return 1;
        };
        let own: Vec<String> = members
            .iter()
            .filter(|m| m.name == self.name)
            .flat_map(|m| &m.peer_urls)
            .chain(&self.initial_advertise_peer_urls)
            .filter_map(|u| host(u))
            .collect();
        let shared = members
            .iter()
            .filter(|m| {
                m.name == self.name
                    || m.peer_urls
                        .iter()
                        .filter_map(|u| host(u))
                        .any(|h| loopback(&h) || own.contains(&h))
            })
            .count();
        shared.max(1)
    }

    /// The worker threads a member runs with when `--worker-threads` is not given: the
    /// machine's `cpus` shared among the members of the cluster that run on it (at least
    /// one). Three members on two CPUs get one each: measured, fewer threads than CPUs then
    /// hand less work to each other (put@1 p50 -18%, put@256 +17% on two CPUs).
    pub fn default_worker_threads(&self, cpus: usize) -> usize {
        (cpus / self.members_on_this_machine()).max(1)
    }

    /// Whether the member's threads run under SCHED_BATCH (see `--scheduling-policy`). Members
    /// sharing a machine wake each other all the time; under SCHED_OTHER each wake-up
    /// preempts whatever runs, another member or a client, and the CPUs spend their time
    /// switching. Measured with three members on two CPUs, `etcd-client`, alternated pairs:
    /// server CPU per put at put@256 46-48 µs against 53-63, get-linearizable@64 27-31 µs
    /// per read against 32-36 and 36-39k reads/s against 28-32k; put@1 unchanged.
    pub fn batch_scheduling(&self) -> bool {
        match self.scheduling_policy {
            SchedulingPolicy::Auto => self.members_on_this_machine() > 1,
            SchedulingPolicy::Batch => true,
            SchedulingPolicy::Normal => false,
        }
    }

    /// Checks every URL option.
    pub fn validate(&self) -> anyhow::Result<()> {
        for u in self
            .listen_client_urls
            .iter()
            .chain(&self.advertise_client_urls)
            .chain(&self.listen_peer_urls)
            .chain(&self.initial_advertise_peer_urls)
        {
            check_url(u)?;
        }
        self.initial_members()?;
        if self.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            bail!(
                "--max-request-bytes {} is above the limit of {MAX_REQUEST_BYTES_LIMIT}: a \
                 request travels between members in one message",
                self.max_request_bytes
            );
        }
        if self.handshake_timeout.is_zero() {
            bail!("--handshake-timeout must be above zero");
        }
        Ok(())
    }
}

/// Parses a duration as Go's `time.ParseDuration` writes it (etcd's duration flags): a
/// sequence of decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, such as
/// `20s`, `1m30s` or `1.5h`; a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (write e.g. 500ms, 20s, 5m, 2h)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * secs;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn check_url(u: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(u).with_context(|| format!("invalid URL {u:?}"))?;
    if url.scheme() != "http" {
        bail!("URL {u:?}: only http is supported (TLS comes later)");
    }
    if url.host_str().is_none() || url.port_or_known_default().is_none() {
        bail!("URL {u:?} needs a host and a port");
    }
    Ok(url)
}

/// The socket address a listen URL names.
pub fn listen_addr(u: &str) -> anyhow::Result<std::net::SocketAddr> {
    let url = check_url(u)?;
    let host = url.host_str().context("no host")?;
    let port = url.port_or_known_default().context("no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = if host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse()
            .with_context(|| format!("listen URL {u:?} must name an IP address"))?
    };
    Ok((ip, port).into())
}

/// A member's ID: derived from its peer URLs and the cluster token, as etcd derives it, so
/// every member computes the same IDs from the same --initial-cluster.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha256::new();
    h.update(urls.join(",").as_bytes());
    h.update(b"|");
    h.update(token.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Member IDs are positive in etcd's tools (printed as hex) and never zero.
    (u64::from_be_bytes(b) >> 1).max(1)
}

/// The cluster's ID: derived from its initial members' IDs.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) >> 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        let d = |s: &str| parse_duration(s);
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "s", "5x", "-1s", "1s5"] {
            assert!(d(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A member's config from its command line.
    fn member(args: &[&str]) -> StoreConfig {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            cfg: StoreConfig,
        }
        let argv = std::iter::once("store").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .map(|c| c.cfg)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Member m1 of three, each on its own machine.
    const THREE_MACHINES_M1: [&str; 6] = [
        "--name",
        "m1",
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:2380",
        "--initial-cluster",
        "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380",
    ];

    #[test]
    fn members_sharing_the_machine_share_its_cpus() {
        let three_on_loopback = member(&[
            "--name",
            "m2",
            "--initial-cluster",
            "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://localhost:2382",
        ]);
        assert_eq!(three_on_loopback.members_on_this_machine(), 3);
        assert_eq!(three_on_loopback.default_worker_threads(2), 1);
        assert_eq!(three_on_loopback.default_worker_threads(8), 2);

        let three_machines = member(&THREE_MACHINES_M1);
        assert_eq!(three_machines.members_on_this_machine(), 1);
        assert_eq!(three_machines.default_worker_threads(2), 2);

        // Two members on one host's address, the third elsewhere.
        let two_here = member(&[
            "--name",
            "b",
            "--initial-cluster",
            "a=http://10.0.0.1:2380,b=http://10.0.0.1:2390,c=http://10.0.0.2:2380",
        ]);
        assert_eq!(two_here.members_on_this_machine(), 2);
        assert_eq!(two_here.default_worker_threads(1), 1, "never below one");
    }

    #[test]
    fn members_sharing_the_machine_run_under_batch_scheduling_unless_told() {
        let shared = [
            "--name",
            "m1",
            "--initial-cluster",
            "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://127.0.0.1:2382",
        ];
        // (arguments, --scheduling-policy, SCHED_BATCH?)
        let cases: [(&[&str], Option<&str>, bool); 6] = [
            (&shared, None, true),
            (&shared, Some("batch"), true),
            (&shared, Some("normal"), false),
            (&THREE_MACHINES_M1, None, false),
            (&THREE_MACHINES_M1, Some("batch"), true),
            (&THREE_MACHINES_M1, Some("normal"), false),
        ];
        for (base, policy, batch) in cases {
            let mut args = base.to_vec();
            if let Some(p) = policy {
                args.extend(["--scheduling-policy", p]);
            }
            assert_eq!(member(&args).batch_scheduling(), batch, "{args:?}");
        }
    }
}
