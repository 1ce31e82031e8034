//! The node's heartbeat: the Lease `kube-node-lease/<node>`, held by the node and renewed every
//! quarter of its duration, as kubelet's node lease controller does: a compare-and-swap update
//! of the Lease last written (re-read on a conflict), recreated if someone deleted it, owned by
//! the Node so that it goes when the Node goes.

use std::time::Duration;

use bosun_api_client::{ApiClient, ApiError};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Back-off after a failed renewal: 200 ms doubling to 7 s (`backoffEnsureLease`), never past
/// the renew interval.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(7);

/// Who the Lease is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseParams {
    /// The node's name: the Lease's name and holder.
    pub node: String,
    /// `leaseDurationSeconds` (`--node-lease-duration-seconds`, 40).
    pub duration_seconds: i32,
    /// The Node's uid, for the owner reference (`None` until known).
    pub node_uid: Option<String>,
}

impl LeaseParams {
    /// How often the Lease is renewed: a quarter of its duration (10 s for 40 s).
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.duration_seconds.max(1)).unwrap_or(1)) / 4
    }
}

/// The Lease renewed at `now` from `base` (the last one read or written; a new one when
/// `None`): holder, duration, renew time, and the owner reference to the Node once known.
pub fn renewed(base: Option<&Lease>, p: &LeaseParams, now: Timestamp) -> Lease {
    let mut lease = base.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(p.node.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(p.node.clone());
    spec.lease_duration_seconds = Some(p.duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    if let Some(uid) = &p.node_uid
        && lease
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
    {
        lease.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: p.node.clone(),
            uid: uid.clone(),
            ..Default::default()
        }]);
    }
    lease
}

/// One renewal: a compare-and-swap update of `latest`. Without a `latest` (the first
/// renewal, or after a conflict or a deletion), the Lease is created; when it exists, it is
/// read and updated from what was read.
pub async fn renew_once(
    client: &ApiClient,
    latest: &mut Option<Lease>,
    p: &LeaseParams,
) -> Result<(), ApiError> {
    if let Some(last) = latest.take() {
        match client
            .update(LEASE_NAMESPACE, &renewed(Some(&last), p, Timestamp::now()))
            .await
        {
            Ok(l) => {
                *latest = Some(l);
                return Ok(());
            }
            // Someone else wrote it, or deleted it: start afresh below.
            Err(e) if e.is_conflict() || e.is_not_found() => {
                debug!(node = %p.node, error = %e, "lease changed behind us; reading it again");
            }
            Err(e) => return Err(e),
        }
    }
    match client
        .create(LEASE_NAMESPACE, &renewed(None, p, Timestamp::now()))
        .await
    {
        Ok(l) => {
            *latest = Some(l);
            return Ok(());
        }
        Err(e) if e.is_already_exists() => {}
        Err(e) => return Err(e),
    }
    let base: Lease = client.get(LEASE_NAMESPACE, &p.node).await?;
    let l = client
        .update(LEASE_NAMESPACE, &renewed(Some(&base), p, Timestamp::now()))
        .await?;
    *latest = Some(l);
    Ok(())
}

/// Renews the node's Lease at once, then every [`LeaseParams::renew_interval`] until
/// `shutdown`; a failed renewal is retried sooner, with back-off. `phase` (below the
/// interval) is added once after the first renewal, so that many hollow nodes registered
/// together spread their renewals over the interval.
pub async fn run(
    client: ApiClient,
    p: LeaseParams,
    phase: Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = p.renew_interval();
    let mut latest = None;
    let mut wait = Duration::ZERO;
    let mut phase = phase.min(interval);
    let mut retry = RETRY_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match renew_once(&client, &mut latest, &p).await {
            Ok(()) => {
                metrics.lease_renewals.inc();
                retry = RETRY_FIRST;
                wait = interval + std::mem::take(&mut phase);
            }
            Err(e) => {
                metrics.lease_errors.inc();
                warn!(node = %p.node, error = %e, retry_in = ?retry, "renew node lease");
                wait = retry.min(interval);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn params(uid: Option<&str>) -> LeaseParams {
        LeaseParams {
            node: "n1".into(),
            duration_seconds: 40,
            node_uid: uid.map(str::to_string),
        }
    }

    #[test]
    fn a_new_lease_is_held_by_the_node() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let l = renewed(None, &params(None), now);
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["metadata"]["name"], "n1");
        assert_eq!(v["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(v["spec"]["holderIdentity"], "n1");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(v["spec"]["renewTime"], "2027-01-15T08:00:00.000000Z");
        assert!(v["metadata"].get("ownerReferences").is_none());
        assert_eq!(params(None).renew_interval(), Duration::from_secs(10));
    }

    #[test]
    fn renewal_keeps_the_version_for_the_swap_and_adds_the_owner_once_known() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut base = renewed(None, &params(None), t0);
        base.metadata.resource_version = Some("42".into());
        let t1 = t0 + jiff::SignedDuration::from_secs(10);
        let l = renewed(Some(&base), &params(Some("uid-1")), t1);
        assert_eq!(l.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(l.spec.as_ref().unwrap().renew_time, Some(MicroTime(t1)));
        let owners = l.metadata.owner_references.clone().unwrap();
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].uid.as_str()),
            ("Node", "uid-1")
        );
        // Someone else's holder is taken back.
        let mut stolen = l.clone();
        stolen.spec.as_mut().unwrap().holder_identity = Some("other".into());
        let back = renewed(Some(&stolen), &params(Some("uid-2")), t1);
        assert_eq!(back.spec.unwrap().holder_identity.as_deref(), Some("n1"));
        assert_eq!(
            back.metadata.owner_references.unwrap()[0].uid,
            "uid-1",
            "owner kept"
        );
    }
}
