//! Patches: JSON patch, JSON merge patch and strategic merge patch ([`patch`]), the
//! strategic merge itself ([`strategic`]) and the merge keys of the served types
//! ([`schema`]).

pub mod patch;
pub mod schema;
pub mod strategic;
