//! An object as the watch cache keeps it: its JSON, encoded once, and the few things that
//! selectors and writers look at.
//!
//! A decoded object (`serde_json::Value`) costs about twelve times its JSON in memory (every
//! small JSON object is a B-tree node of its own): a pod of 3 KB is a tree of 35 KB. The
//! cache keeps thousands of objects and events, so it keeps the JSON and decodes an object
//! only where one is modified (a bind) or rendered (a table).
//!
//! The JSON of an event carries the object's resourceVersion, which the stored bytes do not
//! ([`bosun_api::meta`]): [`with_resource_version`] adds it to the stored bytes directly,
//! without a decode and an encode.

use bytes::Bytes;
use serde_json::Value;

use bosun_api::meta::meta_str;
use bosun_api::resources::Resource;
use bosun_api::selectors::{FieldSelector, LabelSelector, field_value};

/// What selectors and writers read of an object, taken from it once.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    labels: Box<[(String, String)]>,
    /// The values of the resource's selectable fields: metadata.name, metadata.namespace
    /// (always first and second), then its field labels.
    fields: Box<[(&'static str, String)]>,
    deleting: bool,
}

impl Attrs {
    /// The values of the resource's selectable fields, by field.
    pub fn fields(&self) -> &[(&'static str, String)] {
        &self.fields
    }

    /// Takes them from `obj`, an object of `res`.
    pub fn of(res: &Resource, obj: &Value) -> Attrs {
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), bosun_api::selectors::label_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        let fields = ["metadata.name", "metadata.namespace"]
            .iter()
            .chain(res.field_labels)
            .map(|f| (*f, field_value(obj, f)))
            .collect();
        Attrs {
            labels,
            fields,
            deleting: !meta_str(obj, "deletionTimestamp").is_empty(),
        }
    }
}

/// An object with its JSON (including its resourceVersion).
#[derive(Debug)]
pub struct Cached {
    json: Bytes,
    attrs: Attrs,
}

impl Cached {
    /// `json` is the encoding of the object `attrs` were taken from.
    pub fn new(json: Bytes, attrs: Attrs) -> Cached {
        Cached { json, attrs }
    }

    /// Encodes `obj` (an object of `res`, with its resourceVersion set).
    pub fn encode(res: &Resource, obj: &Value) -> Cached {
        Cached {
            json: Bytes::from(serde_json::to_vec(obj).unwrap_or_default()),
            attrs: Attrs::of(res, obj),
        }
    }

    /// The object's JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object, decoded.
    pub fn value(&self) -> Value {
        // The bytes were encoded from (or checked as) a JSON object.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// What selectors and writers read of it.
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// Its namespace ("" for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        self.attrs.fields.get(1).map_or("", |(_, ns)| ns)
    }

    /// Whether it has a deletionTimestamp.
    pub fn deleting(&self) -> bool {
        self.attrs.deleting
    }

    /// Whether it passes a label and a field selector (fields the resource does not select
    /// on, which a watch refuses beforehand, read as "").
    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        let a = &self.attrs;
        labels.matches_by(|k| {
            a.labels
                .iter()
                .find(|(l, _)| l == k)
                .map(|(_, v)| v.clone())
        }) && fields.matches(|f| {
            a.fields
                .iter()
                .find(|(n, _)| *n == f)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
    }
}

/// `stored`, an object's JSON as this apiserver stores it (compact, keys sorted, no
/// resourceVersion), with `"resourceVersion":"<rv>"` in its metadata where a sorted encoding
/// puts it: the bytes that decoding, setting the version and encoding again would give.
/// `None` when the bytes are not of that shape (whitespace, escaped keys, no metadata object,
/// a resourceVersion already there): the caller then decodes and encodes.
pub fn with_resource_version(stored: &[u8], rv: i64) -> Option<Vec<u8>> {
    let top = members(stored, 0)?;
    if top.end != stored.len() {
        return None;
    }
    let mut metas = top.list.iter().filter(|m| m.key(stored) == b"metadata");
    let meta = metas.next()?;
    if metas.next().is_some() || stored[meta.value] != b'{' {
        return None;
    }
    let inner = members(stored, meta.value)?;
    const KEY: &[u8] = b"resourceVersion";
    let field = format!("\"resourceVersion\":\"{rv}\"");
    let mut out = Vec::with_capacity(stored.len() + field.len() + 1);
    match inner.list.iter().find(|m| m.key(stored) >= KEY) {
        Some(m) if m.key(stored) == KEY => return None,
        Some(m) => {
            out.extend_from_slice(&stored[..m.key_start]);
            out.extend_from_slice(field.as_bytes());
            out.push(b',');
            out.extend_from_slice(&stored[m.key_start..]);
        }
        None => {
            let close = inner.end - 1;
            out.extend_from_slice(&stored[..close]);
            if !inner.list.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(&stored[close..]);
        }
    }
    Some(out)
}

/// One member of a JSON object: where its key's quote opens and its value starts.
struct Member {
    key_start: usize,
    key_end: usize,
    value: usize,
}

impl Member {
    /// The key, without quotes (it has no escapes: [`members`] refuses those).
    fn key<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        &b[self.key_start + 1..self.key_end - 1]
    }
}

struct Object {
    list: Vec<Member>,
    /// Just past the closing brace.
    end: usize,
}

/// The members of the compact JSON object opening at `open`; `None` when it is not one, or
/// has whitespace or a key with escapes.
fn members(b: &[u8], open: usize) -> Option<Object> {
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut list = Vec::new();
    let mut i = open + 1;
    if b.get(i) == Some(&b'}') {
        return Some(Object { list, end: i + 1 });
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        if b[i..key_end].contains(&b'\\') || b.get(key_end) != Some(&b':') {
            return None;
        }
        let value = key_end + 1;
        list.push(Member {
            key_start: i,
            key_end,
            value,
        });
        i = skip_value(b, value)?;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Some(Object { list, end: i + 1 }),
            _ => return None,
        }
    }
}

/// Just past the string whose quote opens at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// Just past the value starting at `i` (JSON already known valid but for whitespace);
/// `None` at whitespace.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => return None,
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number, true, false or null: up to what follows it.
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b',' | b'}' | b']' => return (j > i).then_some(j),
                    b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'{' | b'[' | b':' => return None,
                    _ => j += 1,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bosun_api::meta::set_resource_version;
    use bosun_api::resources::by_plural;
    use serde_json::json;

    /// What decoding, stamping and encoding give.
    fn reference(stored: &[u8], rv: i64) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(stored).unwrap();
        set_resource_version(&mut v, rv);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_version_goes_where_an_encoding_of_the_stamped_object_puts_it() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n", "uid": "u"}, "spec": {"x": [1, {"y": "}\"{"}]}}),
            json!({"metadata": {"annotations": {"a": "b"}, "name": "a"}}),
            json!({"metadata": {"uid": "u", "zz": 1}}),
            json!({"metadata": {"name": "x"}, "status": {"s": "a\\\"b", "n": -1.5e3, "t": true, "z": null}}),
            json!({"a": [], "metadata": {}, "z": {}}),
            json!({"metadata": {"labels": {"resourceVersion": "x"}, "managedFields": [{"fieldsV1": {"f:metadata": {}}}]}}),
        ] {
            let stored = serde_json::to_vec(&obj).unwrap();
            assert_eq!(
                with_resource_version(&stored, 42).unwrap(),
                reference(&stored, 42),
                "{obj}"
            );
        }
    }

    #[test]
    fn bytes_of_another_shape_are_left_to_a_decode() {
        for stored in [
            &br#"{"metadata": {"name":"a"}}"#[..],
            br#"{"metadata":{"name":"a"} }"#,
            br#"{"metadata":{"resourceVersion":"3","name":"a"}}"#,
            br#"{"metadata":{"name":"a","resourceVersion":"3"}}"#,
            br#"{"metadata":{"resourc\u0065Version":"3"}}"#,
            br#"{"metadata":{},"metadata":{}}"#,
            br#"{"metadata":[]}"#,
            br#"{"kind":"Pod"}"#,
            br#"["metadata"]"#,
            br#"{"metadata":{"name":"a"}"#,
            br#"{"metadata":{"name":"a"}}x"#,
            b"",
        ] {
            assert_eq!(
                with_resource_version(stored, 7),
                None,
                "{}",
                String::from_utf8_lossy(stored)
            );
        }
    }

    #[test]
    fn a_cached_object_matches_selectors_as_the_object_does() {
        let pods = by_plural("pods").unwrap();
        let obj = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "web", "n": 3}},
            "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        let cached = Cached::encode(pods, &obj);
        for (l, f) in [
            ("app=web", ""),
            ("app=db", ""),
            ("n=3", "spec.nodeName=node-1"),
            ("", "spec.nodeName=node-2"),
            ("", "spec.nodeName="),
            ("", "status.phase!=Failed,metadata.namespace=n"),
            ("app", "metadata.name=q"),
            ("!app", ""),
        ] {
            let (l, f) = (
                LabelSelector::parse(l).unwrap(),
                FieldSelector::parse(f).unwrap(),
            );
            assert_eq!(
                cached.matches(&l, &f),
                bosun_api::selectors::matches(&obj, &l, &f),
                "{l} {f}"
            );
        }
        assert_eq!(cached.namespace(), "n");
        assert!(!cached.deleting());
        assert_eq!(cached.value(), obj);
    }
}
