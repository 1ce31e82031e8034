//! Bosun's Kubernetes-side types and rules, without I/O (as kube-rs keeps them in
//! `kube-core`, apart from its client): the resource table, label and field selectors, name
//! syntax, field errors and the `Status` they render into, watch events, and helpers for
//! object metadata, owner references and conditions.
//!
//! The apiserver and every component depend on this crate; it depends on no runtime, no
//! network and no store, so its rules are the same wherever they run and are tested with
//! plain unit tests.

#![warn(missing_docs)]

pub mod duration;
pub mod field;
pub mod meta;
pub mod names;
pub mod resources;
pub mod selectors;
pub mod status;
pub mod watch;

pub use duration::parse_duration;
pub use field::FieldError;
pub use resources::Resource;
pub use selectors::{FieldSelector, LabelSelector, SelectorError};
pub use status::Status;
pub use watch::{EventType, WatchEvent};
