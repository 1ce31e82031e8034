//! The load generator: connections, the four workloads, the timed run of one scenario and the
//! population of the key space.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bosun_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bosun_proto::etcdserverpb::request_op::Request as Op;
use bosun_proto::etcdserverpb::{
    Compare, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};

use crate::grpc;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// Longest latency the histograms hold, in microseconds (larger values saturate).
const MAX_LATENCY_US: u64 = 60_000_000;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many distinct error messages a run keeps for the report.
const ERROR_SAMPLES: usize = 3;

/// One kind of request the clients issue in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Put of a random key with a random value.
    Put,
    /// Linearizable single-key Range of a random pre-populated key.
    #[value(name = "get-linearizable", alias = "get")]
    GetLinearizable,
    /// Serializable single-key Range of a random pre-populated key.
    GetSerializable,
    /// Txn: if the mod revision of a random key is above 0, put it; else get it.
    Txn,
}

impl Workload {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::GetLinearizable => "get-linearizable",
            Workload::GetSerializable => "get-serializable",
            Workload::Txn => "txn",
        }
    }
}

/// The client library the load generator drives the members with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// The bench's own minimal HTTP/2 client (`benches/src/grpc.rs`): a call's frames leave
    /// together, and calls that are ready together leave in one write.
    Lean,
    /// The `etcd-client` crate (tonic over hyper) at its defaults, as Rust users have it.
    EtcdClient,
    /// Bosun's store SDK (`bosun-client`), which the apiserver uses, at its defaults.
    BosunClient,
}

impl ClientKind {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Lean => "lean",
            ClientKind::EtcdClient => "etcd-client",
            ClientKind::BosunClient => "bosun-client",
        }
    }
}

/// A workload at a given concurrency, through one client library.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What the clients do.
    pub workload: Workload,
    /// Which client library issues the requests.
    pub client: ClientKind,
    /// Concurrent clients, each with at most one request in flight.
    pub clients: usize,
    /// gRPC connections the clients share (client `i` uses connection `i % conns`).
    pub conns: usize,
}

impl Scenario {
    /// The label in the tables, e.g. `put@256 lean`.
    pub fn label(&self) -> String {
        format!(
            "{}@{} {}",
            self.workload.name(),
            self.clients,
            self.client.name()
        )
    }
}

/// Shape of the data the workloads touch.
#[derive(Debug, Clone)]
pub struct KeySpace {
    /// Number of distinct keys.
    pub keys: u64,
    /// Size of each value written, in bytes.
    pub value_size: usize,
}

impl KeySpace {
    /// The name of key number `i`: `bench/` and a zero-padded number.
    pub fn key(&self, i: u64) -> Vec<u8> {
        let width = self.keys.saturating_sub(1).max(1).to_string().len().max(6);
        format!("bench/{i:0width$}").into_bytes()
    }

    /// A random key of the key space.
    fn random_key(&self, rng: &mut SmallRng) -> Vec<u8> {
        self.key(rng.random_range(0..self.keys))
    }

    /// A fresh random value.
    fn random_value(&self, rng: &mut SmallRng) -> Vec<u8> {
        let mut v = vec![0u8; self.value_size];
        rng.fill_bytes(&mut v);
        v
    }
}

/// Figures of one timed run.
#[derive(Debug)]
pub struct RunResult {
    /// Successful requests started inside the measured window.
    pub ops: u64,
    /// Failed requests started inside the measured window.
    pub errors: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Latencies of the successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// A few distinct error messages, for the report.
    pub error_samples: Vec<String>,
    /// CPU time (user and system) the members used during the measured window, when it
    /// could be read from /proc.
    pub server_cpu: Option<Duration>,
    /// CPU time the load generator itself (this process: the client library) used during
    /// the measured window.
    pub client_cpu: Option<Duration>,
}

impl RunResult {
    /// Successful requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Latency at `q` (0..=1) in milliseconds, or `None` when nothing succeeded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (self.ops > 0).then(|| self.latency.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Members' CPU time per successful request, in microseconds: what a request costs the
    /// servers, much less sensitive than ops/s to what else the machine is doing.
    pub fn server_cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// The load generator's CPU time per successful request, in microseconds: what the
    /// client library costs.
    pub fn client_cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.client_cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// Whether every request failed.
    pub fn all_failed(&self) -> bool {
        self.ops == 0
    }

    /// Adds the figures of another run of the same scenario: the window is the sum of both.
    pub fn merge(&mut self, other: RunResult) -> anyhow::Result<()> {
        self.ops += other.ops;
        self.errors += other.errors;
        self.window += other.window;
        self.server_cpu = self.server_cpu.zip(other.server_cpu).map(|(a, b)| a + b);
        self.client_cpu = self.client_cpu.zip(other.client_cpu).map(|(a, b)| a + b);
        self.latency
            .add(&other.latency)
            .context("merge latency histograms")?;
        for msg in other.error_samples {
            keep_sample(&mut self.error_samples, msg);
        }
        Ok(())
    }
}

/// One connection to one member, through either client library; clones share it.
#[derive(Clone)]
enum Conn {
    Lean(grpc::Conn),
    /// An `etcd-client` client given that one member as its only endpoint (its channel is
    /// the crate's balanced one, over one HTTP/2 connection).
    EtcdClient(Box<etcd_client::KvClient>),
    /// A `bosun-client` client given that one member as its only endpoint.
    BosunClient(bosun_client::Client),
}

impl Conn {
    /// Connects to the member at `url` (`http://host:port`).
    async fn connect(url: &str, client: ClientKind) -> anyhow::Result<Conn> {
        Ok(match client {
            ClientKind::Lean => Conn::Lean(grpc::Conn::connect(url).await?),
            ClientKind::EtcdClient => Conn::EtcdClient(Box::new(
                etcd_client::Client::connect([url], None)
                    .await
                    .with_context(|| format!("connect to {url}"))?
                    .kv_client(),
            )),
            ClientKind::BosunClient => Conn::BosunClient(
                bosun_client::Client::connect([url], bosun_client::ConnectOptions::default())
                    .await
                    .with_context(|| format!("connect to {url}"))?,
            ),
        })
    }
}

/// Opens `n` connections with `open`, spread round-robin over `urls` (connection `i` goes to
/// `urls[i % urls.len()]`); each is bound to that one member.
async fn connect<C, F, Fut>(urls: &[String], n: usize, open: F) -> anyhow::Result<Vec<C>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = anyhow::Result<C>>,
{
    if urls.is_empty() {
        bail!("no client URLs");
    }
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let url = &urls[i % urls.len()];
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, open(url.clone()))
            .await
            .with_context(|| format!("connect to {url}: timed out"))??;
        conns.push(conn);
    }
    Ok(conns)
}

/// A single-key range request.
fn range(key: Vec<u8>, serializable: bool) -> RangeRequest {
    RangeRequest {
        key,
        serializable,
        ..Default::default()
    }
}

/// A put request.
fn put(key: Vec<u8>, value: Vec<u8>) -> PutRequest {
    PutRequest {
        key,
        value,
        ..Default::default()
    }
}

/// One request as the etcd v3 API carries it.
enum Call {
    Put(PutRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
}

impl Call {
    /// A request of `workload` on `key`.
    fn new(workload: Workload, key: Vec<u8>, space: &KeySpace, rng: &mut SmallRng) -> Call {
        match workload {
            Workload::Put => Call::Put(put(key, space.random_value(rng))),
            Workload::GetLinearizable => Call::Range(range(key, false)),
            Workload::GetSerializable => Call::Range(range(key, true)),
            Workload::Txn => Call::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater.into(),
                    target: CompareTarget::Mod.into(),
                    key: key.clone(),
                    target_union: Some(TargetUnion::ModRevision(0)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(put(key.clone(), space.random_value(rng)))),
                }],
                failure: vec![RequestOp {
                    request: Some(Op::RequestRange(range(key, false))),
                }],
            }),
        }
    }
}

/// Issues one request of `workload` and waits for its answer.
async fn one_op(
    conn: &mut Conn,
    workload: Workload,
    space: &KeySpace,
    rng: &mut SmallRng,
) -> anyhow::Result<()> {
    let key = space.random_key(rng);
    match conn {
        Conn::Lean(kv) => match Call::new(workload, key, space, rng) {
            Call::Put(r) => put_call(kv, r).await,
            Call::Range(r) => range_call(kv, r).await,
            Call::Txn(r) => kv
                .unary::<TxnResponse>("/etcdserverpb.KV/Txn", &r)
                .await
                .map(drop),
        },
        Conn::EtcdClient(kv) => with_deadline(etcd_client_op(kv, workload, key, space, rng)).await,
        Conn::BosunClient(c) => {
            with_deadline(async {
                match Call::new(workload, key, space, rng) {
                    Call::Put(r) => c.put_raw(r).await.map(drop),
                    Call::Range(r) => c.range_raw(r).await.map(drop),
                    Call::Txn(r) => c.txn_raw(r).await.map(drop),
                }
                .map_err(anyhow::Error::from)
            })
            .await
        }
    }
}

/// `call` with the lean client's per-call deadline.
async fn with_deadline(call: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(grpc::CALL_TIMEOUT, call)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {:?}", grpc::CALL_TIMEOUT))?
}

/// The same request through the `etcd-client` crate's own calls.
async fn etcd_client_op(
    kv: &mut etcd_client::KvClient,
    workload: Workload,
    key: Vec<u8>,
    space: &KeySpace,
    rng: &mut SmallRng,
) -> anyhow::Result<()> {
    use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
    match workload {
        Workload::Put => kv.put(key, space.random_value(rng), None).await.map(drop),
        Workload::GetLinearizable => kv.get(key, None).await.map(drop),
        Workload::GetSerializable => kv
            .get(key, Some(GetOptions::new().with_serializable()))
            .await
            .map(drop),
        Workload::Txn => {
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Greater, 0)])
                .and_then([TxnOp::put(key.clone(), space.random_value(rng), None)])
                .or_else([TxnOp::get(key, None)]);
            kv.txn(txn).await.map(drop)
        }
    }
    .map_err(anyhow::Error::from)
}

/// A put call.
async fn put_call(kv: &mut grpc::Conn, req: PutRequest) -> anyhow::Result<()> {
    kv.unary::<PutResponse>("/etcdserverpb.KV/Put", &req)
        .await
        .map(drop)
}

/// A range call.
async fn range_call(kv: &mut grpc::Conn, req: RangeRequest) -> anyhow::Result<()> {
    kv.unary::<RangeResponse>("/etcdserverpb.KV/Range", &req)
        .await
        .map(drop)
}

/// What one client task measured.
struct ClientStats {
    ops: u64,
    errors: u64,
    latency: Histogram<u64>,
    error_samples: Vec<String>,
}

/// A histogram for latencies in microseconds.
fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("create latency histogram")
}

/// Adds `msg` to `samples` when it is new and there is room.
fn keep_sample(samples: &mut Vec<String>, msg: String) {
    if samples.len() < ERROR_SAMPLES && !samples.contains(&msg) {
        samples.push(msg);
    }
}

/// CPU time (user and system) the processes `pids` have used so far, from /proc; `None` if
/// one cannot be read.
fn cpu_time(pids: &[u32]) -> Option<Duration> {
    // Linux reports both in clock ticks of 1/100 s (USER_HZ) on every architecture it runs on.
    const TICKS_PER_SEC: u64 = 100;
    let mut ticks = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may itself hold spaces: state is the first,
        // utime the 12th and stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

/// Runs `scenario` against the members at `urls`: `warmup` unmeasured, then `duration`
/// measured. Requests count in the window they start in; the CPU time of the processes
/// `pids` (the members) is taken over the same window.
pub async fn run(
    urls: &[String],
    pids: &[u32],
    scenario: &Scenario,
    space: &KeySpace,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<RunResult> {
    let client = scenario.client;
    let conns = connect(urls, scenario.conns.max(1), |url| async move {
        Conn::connect(&url, client).await
    })
    .await?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let cpu_pids = pids.to_vec();
    let cpu = tokio::spawn(async move {
        let me = [std::process::id()];
        tokio::time::sleep_until(measure_from.into()).await;
        let before = (cpu_time(&cpu_pids), cpu_time(&me));
        tokio::time::sleep_until(end.into()).await;
        let after = (cpu_time(&cpu_pids), cpu_time(&me));
        let used =
            |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
        (used(after.0, before.0), used(after.1, before.1))
    });
    let mut tasks = Vec::with_capacity(scenario.clients);
    for i in 0..scenario.clients {
        let mut kv = conns[i % conns.len()].clone();
        let workload = scenario.workload;
        let space = space.clone();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        let mut latency = new_histogram()?;
        tasks.push(tokio::spawn(async move {
            let mut ops = 0u64;
            let mut errors = 0u64;
            let mut error_samples = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let res = one_op(&mut kv, workload, &space, &mut rng).await;
                let took = t0.elapsed();
                if res.is_err() {
                    // A member that fails fast must not turn the client into a busy loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if t0 < measure_from {
                    continue;
                }
                match res {
                    Ok(()) => {
                        ops += 1;
                        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                        latency.saturating_record(us.max(1));
                    }
                    Err(e) => {
                        errors += 1;
                        keep_sample(&mut error_samples, format!("{e:#}"));
                    }
                }
            }
            ClientStats {
                ops,
                errors,
                latency,
                error_samples,
            }
        }));
    }
    let mut result = RunResult {
        ops: 0,
        errors: 0,
        window: duration,
        latency: new_histogram()?,
        error_samples: Vec::new(),
        server_cpu: None,
        client_cpu: None,
    };
    for t in futures::future::join_all(tasks).await {
        let s = t.context("client task failed")?;
        result.ops += s.ops;
        result.errors += s.errors;
        result
            .latency
            .add(&s.latency)
            .context("merge latency histograms")?;
        for msg in s.error_samples {
            keep_sample(&mut result.error_samples, msg);
        }
    }
    (result.server_cpu, result.client_cpu) = cpu.await.context("CPU sampling task failed")?;
    Ok(result)
}

/// Writes every key of the key space once, with `workers` concurrent writers over `conns`
/// connections; each put is retried a few times. Returns how long it took.
pub async fn populate(
    urls: &[String],
    space: &KeySpace,
    workers: usize,
    conns: usize,
) -> anyhow::Result<Duration> {
    let clients = connect(urls, conns.max(1), |url| async move {
        grpc::Conn::connect(&url).await
    })
    .await?;
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for i in 0..workers.max(1) {
        let mut kv = clients[i % clients.len()].clone();
        let next = next.clone();
        let failed = failed.clone();
        let space = space.clone();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        tasks.push(tokio::spawn(async move {
            let mut last_error = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= space.keys {
                    break;
                }
                let key = space.key(k);
                let mut ok = false;
                for attempt in 0..5u32 {
                    let req = put(key.clone(), space.random_value(&mut rng));
                    match put_call(&mut kv, req).await {
                        Ok(_) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            last_error = Some(format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                    }
                }
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            last_error
        }));
    }
    let mut last_error = None;
    for t in futures::future::join_all(tasks).await {
        if let Some(e) = t.context("populate task failed")? {
            last_error = Some(e);
        }
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} of {} keys could not be written; last error: {}",
            space.keys,
            last_error.unwrap_or_default()
        );
    }
    Ok(start.elapsed())
}
