//! What the scheduler tells about its decisions: the pod's `PodScheduled` condition when no
//! node fits, and the `Scheduled` / `FailedScheduling` events (kube-scheduler's
//! `handleSchedulingFailure` and the framework's event recorder). Building them is pure; the
//! [`EventWriter`] writes events in the background from a bounded queue that drops (and
//! counts) events when full, as client-go's broadcaster does, so that events never hold up
//! binding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_api_client::ApiClient;
use bosun_api_client::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use jiff::Timestamp;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::FitError;
use crate::metrics::Metrics;

/// Reason of the condition and event when no node fits.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// Reason of the event when no node fits (or a bind failed).
pub const REASON_FAILED_SCHEDULING: &str = "FailedScheduling";
/// Reason of the event when a pod is bound.
pub const REASON_SCHEDULED: &str = "Scheduled";

/// The message of the `Scheduled` event.
pub fn scheduled_message(namespace: &str, name: &str, node: &str) -> String {
    format!("Successfully assigned {namespace}/{name} to {node}")
}

/// The message of an unschedulable pod's condition and event, as kube-scheduler writes it:
/// the filters' `FitError`, then what the DefaultPreemption PostFilter said. Bosun does not
/// preempt, which is what kube-scheduler reports whenever no pod of lower priority is in the
/// way: "No preemption victims found" on the nodes where preemption might have helped,
/// "Preemption is not helpful" on the others. As in Kubernetes, the PostFilter's message ends
/// with its own period before the separator's ("...pod..").
pub fn unschedulable_message(fit: &FitError, preemption_never: bool) -> String {
    let post = if preemption_never {
        "not eligible due to preemptionPolicy=Never.".to_owned()
    } else {
        let n = fit.num_all_nodes;
        let may_help = fit.preemption_may_help.min(n);
        let mut histogram = Vec::new();
        if may_help > 0 {
            histogram.push(format!("{may_help} {NO_VICTIMS}"));
        }
        if n > may_help {
            histogram.push(format!("{} {NOT_HELPFUL}", n - may_help));
        }
        histogram.sort();
        format!("0/{n} nodes are available: {}.", histogram.join(", "))
    };
    format!("{fit} preemption: {post}.")
}

/// `dryRunPreemption`'s status of a node without victims.
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// `nodesWherePreemptionMightHelp`'s status of an `UnschedulableAndUnresolvable` node.
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// Whether the pod already carries `PodScheduled=False` with this reason and message
/// (`updatePod` is skipped then, as kube-scheduler skips it).
pub fn has_condition(pod: &Pod, reason: &str, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message)
        })
}

/// The strategic merge patch of `pods/status` that sets `PodScheduled=False` (conditions merge
/// by type, so other conditions stay).
pub fn unschedulable_patch(reason: &str, message: &str, now: Timestamp) -> serde_json::Value {
    json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": Time(now),
            }]
        }
    })
}

/// A reference to the pod, as events name it (`involvedObject`).
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// A core/v1 Event about `object` from `component` (`<name>.<hex nanoseconds>`, as
/// client-go's recorder names them).
pub fn event(
    object: &ObjectReference,
    type_: &str,
    reason: &str,
    message: String,
    component: &str,
    now: Timestamp,
) -> Event {
    let nanos = u64::try_from(now.as_nanosecond()).unwrap_or_default();
    let name = object.name.as_deref().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: object.namespace.clone(),
            ..Default::default()
        },
        involved_object: object.clone(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(type_.to_owned()),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        reporting_component: Some(component.to_owned()),
        reporting_instance: None,
        ..Default::default()
    }
}

/// Events queued before new ones are dropped.
pub const EVENT_QUEUE: usize = 1000;
/// Events written at once.
const EVENT_WRITERS: usize = 4;

/// Writes events in the background. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Event>,
    component: Arc<str>,
    metrics: Metrics,
    dropped: Arc<AtomicU64>,
}

impl EventWriter {
    /// A writer for `component` and its task, which ends when `shutdown` flips (what is
    /// queued then is dropped).
    pub fn new(
        client: ApiClient,
        component: &str,
        metrics: Metrics,
        mut shutdown: watch::Receiver<bool>,
    ) -> (EventWriter, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
        let task = tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(EVENT_WRITERS));
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => ev, None => break },
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let ns = ev.metadata.namespace.clone().unwrap_or_default();
                    if let Err(e) = client.create(&ns, &ev).await {
                        debug!(error = %e, reason = ?ev.reason, "event not recorded");
                    }
                    drop(permit);
                });
            }
        });
        (
            EventWriter {
                tx,
                component: component.into(),
                metrics,
                dropped: Arc::default(),
            },
            task,
        )
    }

    /// Queues an event (type Normal or Warning); drops it when the queue is full.
    pub fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: String) {
        let ev = event(
            object,
            type_,
            reason,
            message,
            &self.component,
            Timestamp::now(),
        );
        if self.tx.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.event_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bosun_api_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn events_name_and_describe_the_pod() {
        let now: Timestamp = "2026-12-06T18:00:00Z".parse().unwrap();
        let ev = event(
            &pod_ref(&pod()),
            "Normal",
            REASON_SCHEDULED,
            scheduled_message("prod", "web-1", "n1"),
            "default-scheduler",
            now,
        );
        let nanos = now.as_nanosecond();
        assert_eq!(ev.metadata.name.unwrap(), format!("web-1.{nanos:x}"));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(
            ev.message.as_deref(),
            Some("Successfully assigned prod/web-1 to n1")
        );
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(
            ev.source.unwrap().component.as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(ev.count, Some(1));
    }

    #[test]
    fn messages_read_as_kube_schedulers() {
        let fit = FitError {
            num_all_nodes: 3,
            pre_filter_message: None,
            preemption_may_help: 2,
            reasons: vec![
                ("Insufficient cpu".into(), 2),
                ("node(s) had untolerated taint(s)".into(), 1),
            ],
            unschedulable_plugins: vec!["NodeResourcesFit", "TaintToleration"],
        };
        assert_eq!(
            unschedulable_message(&fit, false),
            "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. \
             preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod.."
        );
        assert_eq!(
            unschedulable_message(&fit, true),
            "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. \
             preemption: not eligible due to preemptionPolicy=Never.."
        );
    }

    #[test]
    fn condition_patch_and_skip() {
        let now: Timestamp = "2026-12-06T18:00:00Z".parse().unwrap();
        let msg = "0/3 nodes are available: 3 Insufficient cpu.";
        let p = unschedulable_patch(REASON_UNSCHEDULABLE, msg, now);
        assert_eq!(
            p.pointer("/status/conditions/0/reason").unwrap(),
            "Unschedulable"
        );
        assert_eq!(
            p.pointer("/status/conditions/0/lastTransitionTime")
                .unwrap(),
            "2026-12-06T18:00:00Z"
        );
        let mut pod = pod();
        assert!(!has_condition(&pod, REASON_UNSCHEDULABLE, msg));
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some(REASON_UNSCHEDULABLE.into()),
                message: Some(msg.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(has_condition(&pod, REASON_UNSCHEDULABLE, msg));
        assert!(!has_condition(
            &pod,
            REASON_UNSCHEDULABLE,
            "0/4 nodes are available: 4 Insufficient cpu."
        ));
    }
}
