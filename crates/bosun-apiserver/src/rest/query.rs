//! Query parameters, read as kube-apiserver reads them (its parameter codec and
//! `ValidateListOptions`): integers must parse, booleans are true unless absent, `false` or
//! `0`, and list options that contradict each other are refused before anything is read.

use std::collections::HashMap;

use crate::error::{ApiResult, Status};
use crate::registry::parse_resource_version;
use bosun_api::field::{FieldError, forbidden, not_supported};
use bosun_api::names::go_quote;

/// A boolean parameter: absent, `false` and `0` (any case) are false; anything else, the
/// empty string included, is true (Kubernetes' `Convert_Slice_string_To_bool`).
pub fn bool_param(q: &HashMap<String, String>, name: &str) -> bool {
    match q.get(name) {
        None => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"),
    }
}

/// An integer parameter, with Go's `strconv.ParseInt` error text when it does not parse.
pub fn int_param(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<i64>> {
    let Some(v) = q.get(name) else {
        return Ok(None);
    };
    parse_go_int(v).map(Some).map_err(Status::bad_request)
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign and decimal digits.
fn parse_go_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>().map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

/// The list options of a list or watch, checked as kube-apiserver checks them: a
/// `resourceVersion` must be a version, and `resourceVersionMatch` must be one of the
/// supported values, come with a `resourceVersion`, and not be used with `continue` or a
/// watch (422 Invalid on `ListOptions.meta.k8s.io`).
pub fn check_list_options(q: &HashMap<String, String>, watch: bool) -> ApiResult<()> {
    if let Some(rv) = q.get("resourceVersion") {
        parse_resource_version(rv)?;
    }
    let mut errors: Vec<FieldError> = Vec::new();
    let field = "resourceVersionMatch";
    match q.get(field).map(String::as_str) {
        None | Some("") => {}
        Some(_) if watch => errors.push(forbidden(
            field,
            "resourceVersionMatch is forbidden for watch",
        )),
        Some(m) => {
            let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
            if rv.is_empty() {
                errors.push(forbidden(
                    field,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if q.get("continue").is_some_and(|c| !c.is_empty()) {
                errors.push(forbidden(
                    field,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if m != "Exact" && m != "NotOlderThan" {
                errors.push(not_supported(field, m, &["Exact", "NotOlderThan", ""]));
            }
            if m == "Exact" && rv == "0" {
                errors.push(forbidden(
                    field,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(Status::invalid("meta.k8s.io", "ListOptions", "", &errors))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn booleans_as_kubernetes_reads_them() {
        for (v, want) in [
            ("true", true),
            ("1", true),
            ("maybe", true),
            ("", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
        ] {
            assert_eq!(bool_param(&q(&[("watch", v)]), "watch"), want, "{v}");
        }
        assert!(!bool_param(&q(&[]), "watch"));
    }

    #[test]
    fn integers_as_go_parses_them() {
        assert_eq!(
            int_param(&q(&[("limit", "-1")]), "limit").unwrap(),
            Some(-1)
        );
        assert_eq!(int_param(&q(&[("limit", "+7")]), "limit").unwrap(), Some(7));
        let e = int_param(&q(&[("limit", "abc")]), "limit").unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        let e = int_param(&q(&[("limit", "99999999999999999999")]), "limit").unwrap_err();
        assert_eq!(
            e.message,
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        assert!(int_param(&q(&[("limit", "")]), "limit").is_err());
    }

    #[test]
    fn list_options() {
        assert!(check_list_options(&q(&[("resourceVersion", "5")]), false).is_ok());
        let e = check_list_options(
            &q(&[("resourceVersion", "5"), ("resourceVersionMatch", "Zzz")]),
            false,
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Zzz\": supported values: \"Exact\", \"NotOlderThan\", \"\""
        );
        let e = check_list_options(&q(&[("resourceVersionMatch", "Exact")]), false).unwrap_err();
        assert_eq!(
            e.message,
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
        );
        let e = check_list_options(
            &q(&[("resourceVersion", "3"), ("resourceVersionMatch", "Exact")]),
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        let e = check_list_options(&q(&[("resourceVersion", "-5")]), true).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "invalid resource version: resourceVersion: Invalid value: \"-5\": strconv.ParseUint: parsing \"-5\": invalid syntax"
        );
    }
}
