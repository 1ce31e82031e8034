//! Helpers shared by the unit tests.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// A timestamp `s` seconds after the epoch.
pub(crate) fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("valid test timestamp")
}

/// A label map from pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
