//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`
//! package with its `LeaseLock`: so that two replicas of a component can run and only one
//! acts.
//!
//! A candidate reads the Lease. It may take it when nobody holds it, when it holds it itself,
//! or when the record has not changed for the record's `leaseDurationSeconds` *as observed on
//! the candidate's own clock* (the holder's `renewTime` is not trusted across machines).
//! Taking or renewing is an update with the resourceVersion read (compare-and-swap), so of two
//! candidates racing, one wins. The leader renews every `retry_period`; if it cannot renew
//! within `renew_deadline`, it has lost the lease and its `lead` function is told to stop.
//! `renew_deadline < lease_duration` leaves the margin: a standby takes over no earlier than
//! `lease_duration` after the last renewal it saw, by which time the old leader has stopped.

use std::time::Duration;

use bosun_api_client::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use bosun_api_client::{ApiClient, ApiError};
use jiff::Timestamp;
use parking_lot::Mutex;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::server::Served;

/// Where the Lease is and how it is held; the defaults are Kubernetes' components'.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// The Lease's namespace (`kube-system`).
    pub namespace: String,
    /// The Lease's name: the component (`bosun-controller-manager`).
    pub name: String,
    /// This candidate: `<hostname>_<uuid>`, as Kubernetes' components name themselves.
    pub identity: String,
    /// How long a lease holds without renewal (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up (10 s).
    pub renew_deadline: Duration,
    /// Between attempts to take or renew (2 s).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Kubernetes' defaults for the Lease `kube-system/<name>`, with a fresh identity.
    pub fn new(name: &str) -> Self {
        LeaderElectionConfig {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: String::new(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The `--leader-elect*` flags of kube-controller-manager and kube-scheduler, shared by
/// the components that elect a leader (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionFlags {
    /// Act only while holding the Lease `<namespace>/<name>` (see the
    /// --leader-elect-resource-* flags), so that several replicas can run and one acts
    /// (`--leader-elect=false` to act at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long a non-leader waits after the leader's last renewal before it takes over.
    #[arg(long, default_value = "15s", value_parser = bosun_api::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading (and exits).
    #[arg(long, default_value = "10s", value_parser = bosun_api::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often the leader renews and candidates try to acquire.
    #[arg(long, default_value = "2s", value_parser = bosun_api::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The namespace of the leader election Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// The name of the leader election Lease (default: the component's,
    /// `kube-controller-manager` or `kube-scheduler`).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

impl Default for LeaderElectionFlags {
    fn default() -> Self {
        let d = LeaderElectionConfig::default();
        LeaderElectionFlags {
            leader_elect: true,
            leader_elect_lease_duration: d.lease_duration,
            leader_elect_renew_deadline: d.renew_deadline,
            leader_elect_retry_period: d.retry_period,
            leader_elect_resource_namespace: d.namespace,
            leader_elect_resource_name: None,
        }
    }
}

impl LeaderElectionFlags {
    /// The election these flags ask for, on the Lease named `default_name` unless
    /// `--leader-elect-resource-name` says otherwise; `None` with `--leader-elect=false`.
    pub fn config(&self, default_name: &str) -> Option<LeaderElectionConfig> {
        self.leader_elect.then(|| LeaderElectionConfig {
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self
                .leader_elect_resource_name
                .clone()
                .unwrap_or_else(|| default_name.to_owned()),
            identity: default_identity(),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        })
    }
}

/// `<hostname>_<uuid>`, as kube-controller-manager and kube-scheduler identify themselves.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Why [`run_leader`] returned an error.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease could not be renewed within `renew_deadline`, or another candidate took it.
    /// Kubernetes' components exit on this; so should callers.
    #[error("leader election lost")]
    LostLeadership,
    /// The `lead` function failed.
    #[error(transparent)]
    Lead(#[from] anyhow::Error),
}

/// Waits to acquire the Lease (create, or update with resourceVersion CAS when expired or held
/// by us), then runs `lead` with a receiver that flips to true when leadership is lost
/// (renew failed past renew_deadline) or shutdown flips; renews every retry_period meanwhile.
/// Returns Ok after `lead` returns (Ok) or on shutdown before leading; Err(LostLeadership)
/// if lost (callers then exit, as Kubernetes components do); Err(Lead) with `lead`'s error.
/// When `lead` has returned, the lease is released (holder cleared), so a standby takes
/// over at once.
pub async fn run_leader<F, Fut>(
    client: ApiClient,
    config: LeaderElectionConfig,
    shutdown: watch::Receiver<bool>,
    lead: F,
) -> Result<(), LeaderError>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_leader_served(client, config, None, shutdown, lead).await
}

/// [`run_leader`], also showing the state on a component server: the gauge
/// `leader_election_master_status{name}` (1 while leading, as Kubernetes' components
/// export it) and the health check `leader-election` (failing once leadership is lost).
pub async fn run_leader_served<F, Fut>(
    client: ApiClient,
    config: LeaderElectionConfig,
    served: Option<&Served>,
    mut shutdown: watch::Receiver<bool>,
    lead: F,
) -> Result<(), LeaderError>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let status = Status::new(served, &config.name);
    let elector = Elector::new(client, config);
    let c = elector.config.clone();
    info!(lease = %format!("{}/{}", c.namespace, c.name), identity = %c.identity, "waiting to acquire the lease");
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => debug!(error = %e, "cannot acquire the lease yet"),
        }
        // client-go's JitterUntil: retry_period * [1, 1.2).
        let jitter = c.retry_period.mul_f64(0.2 * random_fraction());
        tokio::select! {
            biased;
            () = crate::stopped(&mut shutdown) => return Ok(()),
            () = tokio::time::sleep(c.retry_period + jitter) => {}
        }
    }
    info!(lease = %c.name, identity = %c.identity, "became leader");
    status.set(true, Ok(()));

    let (stop_tx, stop_rx) = watch::channel(false);
    let lead = lead(stop_rx);
    tokio::pin!(lead);
    let renew = elector.keep_renewing();
    tokio::pin!(renew);
    let outcome = tokio::select! {
        r = &mut lead => Some(r),
        () = &mut renew => None,
        () = crate::stopped(&mut shutdown) => {
            let _ = stop_tx.send(true);
            // Keep renewing while `lead` winds down.
            tokio::select! {
                r = &mut lead => Some(r),
                () = &mut renew => None,
            }
        }
    };
    match outcome {
        Some(result) => {
            status.set(false, Ok(()));
            if let Err(e) = elector.release().await {
                warn!(error = %e, "cannot release the lease; it expires by itself");
            } else {
                info!(lease = %c.name, "released the lease");
            }
            result.map_err(LeaderError::Lead)
        }
        None => {
            warn!(lease = %c.name, identity = %c.identity, "leader election lost");
            status.set(false, Err("leader election lost".into()));
            let _ = stop_tx.send(true);
            // A standby may take over `lease_duration` after our last renewal, that is no
            // earlier than `lease_duration - renew_deadline` from now: give `lead` that long
            // to notice, then stop it by dropping it.
            let grace = c
                .lease_duration
                .saturating_sub(c.renew_deadline)
                .max(Duration::from_millis(100));
            let _ = tokio::time::timeout(grace, &mut lead).await;
            Err(LeaderError::LostLeadership)
        }
    }
}

/// A value in [0, 1) from a fresh random UUID (no RNG crate needed for jitter).
fn random_fraction() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() >> 75;
    // 53 bits of randomness: exactly representable.
    #[allow(clippy::cast_precision_loss)]
    let f = bits as f64 / (1u64 << 53) as f64;
    f
}

/// `leader_election_master_status`, by lease name.
type StatusGauge = Family<Vec<(String, String)>, Gauge>;

/// The gauge and health check on a component server, if there is one.
struct Status {
    gauge: Option<(StatusGauge, String)>,
    served: Option<Served>,
}

impl Status {
    fn new(served: Option<&Served>, name: &str) -> Self {
        let Some(served) = served else {
            return Status {
                gauge: None,
                served: None,
            };
        };
        let family = StatusGauge::default();
        served.registry.write().register(
            "leader_election_master_status",
            "Whether this candidate is the leader of the lease (1) or not (0)",
            family.clone(),
        );
        served.health.set("leader-election", Ok(()));
        Status {
            gauge: Some((family, name.to_owned())),
            served: Some(served.clone()),
        }
    }

    fn set(&self, leading: bool, health: Result<(), String>) {
        if let Some((family, name)) = &self.gauge {
            family
                .get_or_create(&vec![("name".to_owned(), name.clone())])
                .set(i64::from(leading));
        }
        if let Some(s) = &self.served {
            s.health.set("leader-election", health);
        }
    }
}

/// One candidate's view of the Lease.
struct Elector {
    client: ApiClient,
    config: LeaderElectionConfig,
    /// The record last read, and when (on our clock) it last changed.
    observed: Mutex<Option<(LeaseSpec, Instant)>>,
}

impl Elector {
    fn new(client: ApiClient, config: LeaderElectionConfig) -> Self {
        Elector {
            client,
            config,
            observed: Mutex::new(None),
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Notes the record read; when it changed, the observation time moves to now.
    fn observe(&self, spec: &LeaseSpec) -> Instant {
        let mut o = self.observed.lock();
        match &*o {
            Some((prev, at)) if prev == spec => *at,
            _ => {
                let now = Instant::now();
                *o = Some((spec.clone(), now));
                now
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`: true when we hold the lease after it.
    async fn try_acquire_or_renew(&self) -> Result<bool, ApiError> {
        let c = &self.config;
        let now = MicroTime(Timestamp::now());
        let lease = match self.client.get::<Lease>(&c.namespace, &c.name).await {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                let spec = LeaseSpec {
                    holder_identity: Some(c.identity.clone()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(c.name.clone()),
                        namespace: Some(c.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec.clone()),
                };
                return match self.client.create(&c.namespace, &lease).await {
                    Ok(_) => {
                        self.observe(&spec);
                        Ok(true)
                    }
                    Err(e) if e.is_already_exists() => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let old = lease.spec.clone().unwrap_or_default();
        let observed_at = self.observe(&old);
        let holder = old.holder_identity.clone().unwrap_or_default();
        let ours = holder == c.identity;
        if !holder.is_empty() && !ours {
            let held_for = old
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(c.lease_duration, Duration::from_secs);
            if observed_at + held_for > Instant::now() {
                return Ok(false);
            }
        }
        let spec = LeaseSpec {
            holder_identity: Some(c.identity.clone()),
            lease_duration_seconds: Some(self.lease_seconds()),
            acquire_time: if ours {
                old.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: if ours {
                old.lease_transitions
            } else {
                Some(old.lease_transitions.unwrap_or(0).saturating_add(1))
            },
            ..old
        };
        let mut next = lease;
        next.spec = Some(spec.clone());
        // `next` carries the resourceVersion read: the update is a compare-and-swap.
        match self.client.update(&c.namespace, &next).await {
            Ok(_) => {
                if !ours {
                    info!(lease = %c.name, previous = %holder, "took over the lease");
                }
                self.observe(&spec);
                Ok(true)
            }
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renews every `retry_period`; returns when the lease is lost: not renewed within
    /// `renew_deadline`, or taken by another candidate.
    async fn keep_renewing(&self) {
        let c = &self.config;
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(c.retry_period).await;
            let deadline = last_renewal + c.renew_deadline;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => {
                    last_renewal = Instant::now();
                    continue;
                }
                Ok(Ok(false)) => {
                    let holder = self
                        .observed
                        .lock()
                        .as_ref()
                        .and_then(|(s, _)| s.holder_identity.clone())
                        .unwrap_or_default();
                    if !holder.is_empty() && holder != c.identity {
                        warn!(lease = %c.name, holder = %holder, "another candidate holds the lease");
                        return;
                    }
                }
                Ok(Err(e)) => warn!(lease = %c.name, error = %e, "cannot renew the lease"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Clears the holder if it is still us (client-go's `ReleaseOnCancel`), so a standby
    /// need not wait for the lease to expire.
    async fn release(&self) -> Result<(), ApiError> {
        let c = &self.config;
        let mut lease = self.client.get::<Lease>(&c.namespace, &c.name).await?;
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(c.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        self.client.update(&c.namespace, &lease).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubernetes_ones() {
        let c = LeaderElectionConfig::new("bosun-scheduler");
        assert_eq!(c.namespace, "kube-system");
        assert_eq!(c.name, "bosun-scheduler");
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        let (host, id) = c.identity.rsplit_once('_').unwrap_or_default();
        assert!(!host.is_empty() && id.len() == 36, "{}", c.identity);
        assert_ne!(c.identity, LeaderElectionConfig::new("x").identity);
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }
}
