//! Networking pieces shared by the store and its SDK, which must not depend on each other.

pub mod coalesce;
