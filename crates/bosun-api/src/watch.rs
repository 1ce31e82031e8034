//! Watch events: the event types of a Kubernetes watch and the JSON shape of one event,
//! `{"type":"ADDED","object":{...}}`, which REST watches send one per line and which gRPC
//! watches carry as a type and the object's JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of a watch event (Kubernetes' `watch.EventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// The object was created (or is in the initial state of the watch).
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
    /// Every change up to the object's `resourceVersion` has been sent; the object has only
    /// `kind`, `apiVersion` and `metadata.resourceVersion`.
    Bookmark,
    /// The watch ends with the `Status` the event carries.
    Error,
}

impl EventType {
    /// The type as Kubernetes writes it: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }

    /// The type named `s`, if it is one.
    pub fn parse(s: &str) -> Option<EventType> {
        [
            EventType::Added,
            EventType::Modified,
            EventType::Deleted,
            EventType::Bookmark,
            EventType::Error,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One watch event as Kubernetes encodes it (`metav1.WatchEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent<T = Value> {
    /// What happened.
    #[serde(rename = "type")]
    pub type_: EventType,
    /// The object (a `Status` for [`EventType::Error`]).
    pub object: T,
}

/// One line of a JSON watch stream: the event with an object already encoded as JSON
/// (`object_json`), so an object shared by many watchers is encoded once. The same bytes as
/// encoding a [`WatchEvent`] and a newline.
pub fn event_line(type_: EventType, object_json: &[u8]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"type\":\"";
    const MID: &[u8] = b"\",\"object\":";
    let name = type_.as_str().as_bytes();
    let mut line = Vec::with_capacity(HEAD.len() + name.len() + MID.len() + object_json.len() + 2);
    line.extend_from_slice(HEAD);
    line.extend_from_slice(name);
    line.extend_from_slice(MID);
    line.extend_from_slice(object_json);
    line.extend_from_slice(b"}\n");
    line
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for t in [
            EventType::Added,
            EventType::Modified,
            EventType::Deleted,
            EventType::Bookmark,
            EventType::Error,
        ] {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        assert_eq!(EventType::parse("added"), None);
    }

    #[test]
    fn a_line_is_the_encoded_event() {
        let obj = json!({"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7"}});
        let line = event_line(EventType::Modified, &serde_json::to_vec(&obj).unwrap());
        let mut want = serde_json::to_vec(&WatchEvent {
            type_: EventType::Modified,
            object: obj.clone(),
        })
        .unwrap();
        want.push(b'\n');
        assert_eq!(line, want);
        let back: WatchEvent = serde_json::from_slice(&line).unwrap();
        assert_eq!((back.type_, back.object), (EventType::Modified, obj));
    }
}
