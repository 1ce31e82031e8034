//! A watch recorder: every state the objects of one kind in one namespace went through, one
//! state per watch event, starting from a list. Tests check an invariant on every state of a
//! rollout (maxSurge, maxUnavailable, a pod bound once) rather than on samples.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::k8s_openapi::serde::de::DeserializeOwned;
use bosun_api_client::k8s_openapi::{Metadata, Resource};
use bosun_api_client::{ApiClient, ListParams, WatchEvent, WatchParams};
use parking_lot::Mutex;

/// The objects by name after each event of one watch.
pub type States<K> = Vec<BTreeMap<String, K>>;

/// The states a watch went through, recorded by a background task until [`History::stop`].
pub struct History<K> {
    states: Arc<Mutex<States<K>>>,
    ended: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> History<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Lists the kind in `ns`, then records every event of a watch from the list's version.
    pub async fn record(client: &ApiClient, ns: &str) -> Self {
        let list = client.list::<K>(ns, &ListParams::default()).await.unwrap();
        let mut current: BTreeMap<String, K> = list
            .items
            .into_iter()
            .map(|o| (o.metadata().name.clone().unwrap_or_default(), o))
            .collect();
        let states = Arc::new(Mutex::new(vec![current.clone()]));
        let ended = Arc::new(AtomicBool::new(false));
        let mut w = client
            .watch::<K>(ns, &WatchParams::from_version(&list.resource_version))
            .await
            .unwrap();
        let (s, e) = (states.clone(), ended.clone());
        let task = tokio::spawn(async move {
            while let Ok(Some(ev)) = w.next().await {
                match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        current.insert(o.metadata().name.clone().unwrap_or_default(), o);
                    }
                    WatchEvent::Deleted(o) => {
                        current.remove(o.metadata().name.as_deref().unwrap_or(""));
                    }
                    WatchEvent::Bookmark(_) => continue,
                }
                s.lock().push(current.clone());
            }
            e.store(true, Ordering::SeqCst);
        });
        History {
            states,
            ended,
            task,
        }
    }

    /// Stops recording and returns the states; panics if the watch ended before, since the
    /// history would then miss states.
    pub fn stop(self) -> States<K> {
        self.task.abort();
        assert!(
            !self.ended.load(Ordering::SeqCst),
            "the recorded watch ended early: the history is incomplete"
        );
        std::mem::take(&mut *self.states.lock())
    }
}

/// For each object, the distinct non-empty values `field` took over the states, in order (a
/// value that comes back after another counts again). For pods and their `spec.nodeName`: a
/// pod bound once shows one node.
pub fn field_changes<K>(
    states: &States<K>,
    field: impl Fn(&K) -> Option<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for state in states {
        for (name, o) in state {
            let Some(v) = field(o).filter(|v| !v.is_empty()) else {
                continue;
            };
            let values = seen.entry(name.clone()).or_default();
            if values.last() != Some(&v) {
                values.push(v);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::field_changes;
    use std::collections::BTreeMap;

    #[test]
    fn field_changes_lists_each_change_once() {
        let s = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let states = vec![
            s(&[("a", ""), ("b", "n1")]),
            s(&[("a", "n2"), ("b", "n1")]),
            s(&[("a", "n2"), ("b", "n3")]),
            s(&[("a", "n2")]),
        ];
        let got = field_changes(&states, |v: &String| Some(v.clone()));
        assert_eq!(got["a"], vec!["n2"]);
        assert_eq!(got["b"], vec!["n1", "n3"]);
    }
}
