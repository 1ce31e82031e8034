//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes'
//! strategic merge patch, chosen by the request's Content-Type.

use json_patch::PatchOperation;
use serde_json::Value;

use super::schema::Schema;
use super::strategic::strategic_merge;
use crate::error::{ApiResult, Status};
use crate::limits::MAX_JSON_PATCH_OPERATIONS;

/// A patch format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// From a Content-Type header (parameters ignored).
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Err(Status::unsupported_media_type(
                "server-side apply is not supported; use client-side `kubectl apply`",
            )),
            other => Err(Status::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }

    /// From the gRPC API's name.
    pub fn from_name(s: &str) -> ApiResult<Self> {
        match s {
            "json" => Ok(PatchType::Json),
            "merge" => Ok(PatchType::Merge),
            "strategic" => Ok(PatchType::Strategic),
            other => Err(Status::bad_request(format!(
                "unknown patch type {other:?}: use json, merge or strategic"
            ))),
        }
    }
}

/// Applies `patch` to `cur`, an object whose merge keys are `schema` (for strategic merge).
/// `copy_limit` bounds the bytes the `copy` operations of a JSON patch may add together (see
/// [`crate::limits`]).
pub fn apply(
    ptype: PatchType,
    schema: &'static Schema,
    cur: &Value,
    patch: &Value,
    copy_limit: usize,
) -> ApiResult<Value> {
    match ptype {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
            if ops.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(Status::too_large(format!(
                    "Request entity too large: The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
                    ops.len()
                )));
            }
            apply_json_patch(cur, &ops, copy_limit)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(Status::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut doc = cur.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            strategic_merge(schema, cur, patch).map_err(|e| Status::invalid_patch(e.to_string()))
        }
    }
}

/// Applies a JSON patch one operation at a time, counting the bytes each `copy` adds before
/// it is made: a patch that copies an object into itself doubles the document with every
/// operation, so the copy is refused once the total would pass `copy_limit`, as Kubernetes'
/// `AccumulatedCopySizeLimit` does. The document is a copy of `cur`, dropped on failure.
fn apply_json_patch(cur: &Value, ops: &[PatchOperation], copy_limit: usize) -> ApiResult<Value> {
    let mut doc = cur.clone();
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if let PatchOperation::Copy(c) = op
            && let Some(source) = doc.pointer(c.from.as_str())
        {
            copied = copied.saturating_add(encoded_len(source));
            if copied > copy_limit {
                return Err(Status::patch_failed(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {copy_limit}"
                )));
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            Status::patch_failed(format!(
                "operation '/{i}' failed at path '{}': {}",
                e.path, e.kind
            ))
        })?;
    }
    Ok(doc)
}

/// The length of a value's JSON encoding, counted without building it.
fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing to a counter cannot fail; a failure would only undercount a value the object
    // limit still bounds.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The merge schema of a served kind.
    pub(super) fn schema(kind: &str) -> &'static Schema {
        crate::kinds::by_kind(kind).unwrap().merge_schema()
    }

    const LIMIT: usize = 3 << 20;

    #[test]
    fn the_three_patch_types() {
        let cur = json!({"metadata":{"name":"a","labels":{"x":"1","y":"2"}},"spec":{"replicas":1}});
        let j = apply(
            PatchType::Json,
            schema("Deployment"),
            &cur,
            &json!([{"op":"replace","path":"/spec/replicas","value":3}]),
            LIMIT,
        )
        .unwrap();
        assert_eq!(j["spec"]["replicas"], 3);
        let m = apply(
            PatchType::Merge,
            schema("Deployment"),
            &cur,
            &json!({"metadata":{"labels":{"x":null,"z":"3"}}}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(m["metadata"]["labels"], json!({"y":"2","z":"3"}));
        let s = apply(
            PatchType::Strategic,
            schema("Deployment"),
            &cur,
            &json!({"spec":{"replicas":5}}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(s["spec"]["replicas"], 5);
        let bad = apply(
            PatchType::Json,
            schema("Deployment"),
            &cur,
            &json!([{"op":"remove","path":"/spec/nothing"}]),
            LIMIT,
        )
        .unwrap_err();
        assert_eq!((bad.code, bad.reason), (422, "Invalid"));
        assert_eq!(
            bad.message,
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::from_content_type("text/plain").unwrap_err().code,
            415
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod limit_tests {
    use super::tests::schema;
    use super::*;
    use serde_json::json;

    /// Copying the object into itself doubles it each time: the copies are counted before
    /// they are made, and refused past the limit with Kubernetes' answer.
    #[test]
    fn copies_are_bounded_before_they_are_made() {
        let cur = json!({"metadata": {"name": "a"}, "data": {"x": "y".repeat(1000)}});
        let ops: Vec<Value> = (0..24)
            .map(|_| json!({"op": "copy", "from": "/data", "path": "/data/again"}))
            .collect();
        let e = apply(
            PatchType::Json,
            schema("Pod"),
            &cur,
            &Value::Array(ops),
            64 * 1024,
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        let cause = &e.details.as_ref().unwrap().causes[0].message;
        assert!(
            cause.starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            ) && cause.ends_with(", exceeding the limit 65536"),
            "{cause}"
        );
        // Within the limit the copies are made.
        let ops = json!([{"op": "copy", "from": "/data", "path": "/data/again"}]);
        let out = apply(PatchType::Json, schema("Pod"), &cur, &ops, 64 * 1024).unwrap();
        assert_eq!(out["data"]["again"]["x"], cur["data"]["x"]);
    }

    #[test]
    fn too_many_operations() {
        let ops: Vec<Value> = (0..10_001)
            .map(|_| json!({"op": "test", "path": "/a", "value": 1}))
            .collect();
        let e = apply(
            PatchType::Json,
            schema("Pod"),
            &json!({"a": 1}),
            &Value::Array(ops),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(
            e.message,
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }

    #[test]
    fn a_failed_operation_names_its_index() {
        let ops =
            json!([{"op": "add", "path": "/a", "value": 1}, {"op": "remove", "path": "/nothing"}]);
        let e = apply(PatchType::Json, schema("Pod"), &json!({}), &ops, 1 << 20).unwrap_err();
        assert_eq!(
            e.details.unwrap().causes[0].message,
            "operation '/1' failed at path '/nothing': path is invalid"
        );
    }
}
