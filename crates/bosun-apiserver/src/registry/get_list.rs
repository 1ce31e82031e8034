//! Get and list. A list is read at one revision, a page at a time: the continue token
//! carries that revision and the last key returned, so every page of a list sees the same
//! state, until the store compacts that revision away (410 Expired).

use base64::Engine as _;
use bosun_api::resources::Resource;
use bosun_api::selectors::{FieldSelector, LabelSelector, matches};
use bosun_client::prefix_end;
use serde_json::Value;

use super::store::{RangeError, Store};
use super::{Registry, stored};
use crate::error::{ApiResult, Status};
use crate::kinds::Kind;

/// Options of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Most items to return; 0 for all.
    pub limit: i64,
    /// The continue token of the previous page.
    pub continue_token: String,
    /// `resourceVersion` with `resourceVersionMatch=Exact`: read at this revision.
    pub exact_revision: Option<i64>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListResult {
    /// Matching objects, in key order.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: i64,
    /// Set when more items may follow.
    pub continue_token: Option<String>,
    /// Items not returned yet, when known (no selectors).
    pub remaining: Option<i64>,
}

/// The continue token: the revision of the first page and the key to start after.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        Status::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

/// A `resourceVersion` parameter of a list or watch: "" for none, else a store revision.
/// Revisions are unsigned, so anything but decimal digits is refused (400), with the text of
/// kube-apiserver's storage; a version above the largest revision is taken as that.
pub fn parse_resource_version(rv: &str) -> ApiResult<Option<i64>> {
    if rv.is_empty() {
        return Ok(None);
    }
    if !rv.bytes().all(|b| b.is_ascii_digit()) {
        let q = bosun_api::names::go_quote(rv);
        return Err(Status::bad_request(format!(
            "invalid resource version: resourceVersion: Invalid value: {q}: strconv.ParseUint: parsing {q}: invalid syntax"
        )));
    }
    Ok(Some(rv.parse::<i64>().unwrap_or(i64::MAX)))
}

/// Refuses a field selector on a field the resource does not offer for selection (400).
pub fn check_field_selector(res: &Resource, fields: &FieldSelector) -> ApiResult<()> {
    for (f, _, _) in fields.requirements() {
        if !res.field_selectable(f) {
            return Err(Status::bad_request(format!(
                "field label not supported: {f}"
            )));
        }
    }
    Ok(())
}

impl<S: Store> Registry<S> {
    /// One object.
    pub async fn get(&self, kind: &dyn Kind, ns: &str, name: &str) -> ApiResult<Value> {
        Ok(self.read_existing(kind.resource(), ns, name).await?.obj)
    }

    /// A list (one page of it with a limit).
    pub async fn list(
        &self,
        kind: &dyn Kind,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let res = kind.resource();
        check_field_selector(res, &opts.fields)?;
        let prefix = self.collection_prefix(res, ns);
        let end = prefix_end(prefix.as_bytes());
        let (mut revision, mut start) = if opts.continue_token.is_empty() {
            (
                opts.exact_revision.unwrap_or(0),
                prefix.clone().into_bytes(),
            )
        } else {
            let t = decode_continue(&opts.continue_token)?;
            let mut start = prefix.clone().into_bytes();
            start.extend_from_slice(t.start.as_bytes());
            start.push(0);
            (t.rv, start)
        };
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        let want = usize::try_from(opts.limit).unwrap_or(0);
        let mut items = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut more;
        let mut remaining = None;
        loop {
            // Without a limit, one read; with one, pages of `limit` until enough match.
            let limit = if want > 0 {
                i64::try_from(want - items.len()).unwrap_or(i64::MAX)
            } else {
                0
            };
            let resp = self
                .store
                .range(start.clone(), end.clone(), revision, limit)
                .await
                .map_err(|e| match e {
                    RangeError::Compacted if !opts.continue_token.is_empty() => {
                        Status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
                    }
                    RangeError::Compacted => {
                        Status::expired(format!("too old resource version: {revision}"))
                    }
                    RangeError::FutureRevision => {
                        Status::timeout(format!("Too large resource version: {revision}"))
                    }
                    RangeError::Other(e) => e,
                })?;
            if revision == 0 {
                revision = resp.revision;
            }
            more = resp.more;
            let n = resp.kvs.len();
            for kv in &resp.kvs {
                last_key = Some(kv.key.clone());
                let Some(s) = stored(&kv.value, kv.mod_revision) else {
                    continue;
                };
                if matches(&s.obj, &opts.labels, &opts.fields) {
                    items.push(s.obj);
                }
            }
            if want == 0 || items.len() >= want || !more || n == 0 {
                if want > 0 && more && !filtered {
                    remaining = Some(resp.count - i64::try_from(n).unwrap_or(0));
                }
                break;
            }
            if let Some(k) = &last_key {
                start = k.clone();
                start.push(0);
            }
        }
        let continue_token = match (&last_key, more && want > 0) {
            (Some(k), true) => {
                let rest = String::from_utf8_lossy(&k[prefix.len().min(k.len())..]).into_owned();
                Some(encode_continue(revision, &rest))
            }
            _ => None,
        };
        Ok(ListResult {
            items,
            revision,
            continue_token,
            remaining,
        })
    }
}
