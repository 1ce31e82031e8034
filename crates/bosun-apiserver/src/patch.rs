//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes'
//! strategic merge patch, chosen by the request's Content-Type.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::strategic_merge::strategic_merge;

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
            "application/apply-patch+yaml" => Err(ApiError::unsupported_media_type(
                "server-side apply is not supported; use client-side `kubectl apply`",
            )),
            other => Err(ApiError::unsupported_media_type(format!(
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
            other => Err(ApiError::bad_request(format!(
                "unknown patch type {other:?}: use json, merge or strategic"
            ))),
        }
    }
}

/// Applies `patch` to `cur` (an object of `kind`).
pub fn apply(ptype: PatchType, kind: &str, cur: &Value, patch: &Value) -> ApiResult<Value> {
    match ptype {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = cur.clone();
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::invalid_patch(e.to_string()))?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut doc = cur.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            strategic_merge(kind, cur, patch).map_err(|e| ApiError::invalid_patch(e.to_string()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_patch_types() {
        let cur = json!({"metadata":{"name":"a","labels":{"x":"1","y":"2"}},"spec":{"replicas":1}});
        let j = apply(
            PatchType::Json,
            "Deployment",
            &cur,
            &json!([{"op":"replace","path":"/spec/replicas","value":3}]),
        )
        .unwrap();
        assert_eq!(j["spec"]["replicas"], 3);
        let m = apply(
            PatchType::Merge,
            "Deployment",
            &cur,
            &json!({"metadata":{"labels":{"x":null,"z":"3"}}}),
        )
        .unwrap();
        assert_eq!(m["metadata"]["labels"], json!({"y":"2","z":"3"}));
        let s = apply(
            PatchType::Strategic,
            "Deployment",
            &cur,
            &json!({"spec":{"replicas":5}}),
        )
        .unwrap();
        assert_eq!(s["spec"]["replicas"], 5);
        let bad = apply(
            PatchType::Json,
            "Deployment",
            &cur,
            &json!([{"op":"remove","path":"/spec/nothing"}]),
        )
        .unwrap_err();
        assert_eq!(bad.code, 422);
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
