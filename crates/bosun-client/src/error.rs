//! The client's error type and its classification ([`Outcome`]).

use std::error::Error as StdError;

use tonic::{Code, Status};

/// The exact status messages etcd (and so Bosun) puts on its gRPC errors.
///
/// [`Error::from_status`] recognises these; a server implementation can use the same
/// constants so that both sides agree byte for byte.
pub mod messages {
    /// The requested revision is older than the compaction point.
    pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
    /// The requested revision is newer than the store's current revision.
    pub const FUTURE_REVISION: &str = "etcdserver: mvcc: required revision is a future revision";
    /// The lease does not exist (never granted, revoked or expired).
    pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
    /// The member has no leader and cannot serve the request.
    pub const NO_LEADER: &str = "etcdserver: no leader";
    /// The request timed out inside the server; the prefix of several etcd messages.
    pub const TIMEOUT: &str = "etcdserver: request timed out";
    /// The backend quota is exhausted (a NOSPACE alarm is raised).
    pub const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
    /// The request exceeds the server's request size limit.
    pub const REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
    /// The txn has more operations than the server allows.
    pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
    /// The txn writes the same key twice.
    pub const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
    /// The key does not exist (e.g. a put with `ignore_value` on a missing key).
    pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";
}

/// Every failure the client reports.
///
/// Server errors are recognised by etcd's exact status messages (see [`messages`]); anything
/// else keeps its gRPC code in [`Error::Other`]. Use [`Error::outcome`] to learn whether a
/// failed write may nevertheless have been applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The requested revision has been compacted away. For a watch this ends the stream;
    /// `compact_revision` is the oldest revision still available (0 when the server did not
    /// say, as with unary RPCs).
    #[error(
        "etcdserver: mvcc: required revision has been compacted (compact revision {compact_revision})"
    )]
    Compacted {
        /// The store's compaction revision, or 0 when unknown.
        compact_revision: i64,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// The member has no leader; the request was not proposed.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request timed out, in the server or waiting for its answer.
    #[error("request timed out: {message}")]
    Timeout {
        /// The server's message, or a description of the client-side deadline.
        message: String,
    },
    /// The store's space quota is exhausted.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The request exceeds the server's size limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The txn has too many operations.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// The txn writes the same key more than once.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// The key does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The transport failed: no connection, connection lost, or the server answered
    /// `UNAVAILABLE` for another reason.
    #[error("unavailable: {message}")]
    Unavailable {
        /// A description of the failure.
        message: String,
        /// True when the connection could not be established at all, so the request never
        /// left this process ([`Outcome::NotApplied`]).
        connect_failed: bool,
    },
    /// The server canceled a watch for a reason other than compaction.
    #[error("watch canceled by server: {reason}")]
    WatchCanceled {
        /// The server's `cancel_reason`.
        reason: String,
    },
    /// A fragmented watch response grew past the configured bound.
    #[error("fragmented watch response exceeds {limit} bytes")]
    FragmentTooLarge {
        /// The bound, from [`crate::WatchOptions::with_max_fragment_bytes`].
        limit: usize,
    },
    /// The server sent something that breaks the protocol (e.g. interleaved fragments).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A snapshot failed its integrity check (trailing sha256 missing or wrong).
    #[error("snapshot integrity check failed: {0}")]
    SnapshotCorrupt(String),
    /// A bad argument given to the client (e.g. an unparsable endpoint).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A local I/O error (writing a snapshot file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other gRPC error.
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

/// What a failed request means for the state of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request was definitely not applied, and the failure is transient: re-sending the
    /// same request is safe, even for a write. Examples: the connection could not be
    /// established so nothing was sent; the member had no leader so nothing was proposed.
    NotApplied,
    /// The request may or may not have been applied: it was (or may have been) sent and no
    /// answer came back. Examples: timeouts, a connection lost after sending. A write must be
    /// checked (read back) before it is retried.
    Unknown,
    /// The server processed and rejected the request; it was not applied, and sending it
    /// again unchanged fails the same way. Examples: compacted/future revision, lease not
    /// found, no space, request too large, invalid arguments.
    Failed,
}

impl Error {
    /// Maps a gRPC status to an [`Error`], by etcd's exact messages first and the code second.
    ///
    /// A `UNAVAILABLE` status whose source chain says the request never left this process
    /// (the client could not connect, or its connection closed before taking the request;
    /// `tonic::ConnectError` counts too) becomes `Unavailable { connect_failed: true, .. }`; a
    /// `DEADLINE_EXCEEDED` or client-side timeout becomes [`Error::Timeout`].
    pub fn from_status(status: Status) -> Error {
        if let Some(err) = Error::from_etcd_message(status.message()) {
            return err;
        }
        let message = status.message().to_string();
        match status.code() {
            Code::Unavailable => Error::Unavailable {
                connect_failed: has_connect_error(&status),
                message,
            },
            Code::DeadlineExceeded => Error::Timeout { message },
            Code::Cancelled if has_timeout_expired(&status) => Error::Timeout { message },
            code => Error::Other { code, message },
        }
    }

    /// Recognises one of etcd's error messages (see [`messages`]); `None` for any other text.
    pub fn from_etcd_message(message: &str) -> Option<Error> {
        let err = match message {
            messages::COMPACTED => Error::Compacted {
                compact_revision: 0,
            },
            messages::FUTURE_REVISION => Error::FutureRevision,
            messages::LEASE_NOT_FOUND => Error::LeaseNotFound,
            messages::NO_LEADER => Error::NoLeader,
            messages::NO_SPACE => Error::NoSpace,
            messages::REQUEST_TOO_LARGE => Error::RequestTooLarge,
            messages::TOO_MANY_OPS => Error::TooManyOps,
            messages::DUPLICATE_KEY => Error::DuplicateKey,
            messages::KEY_NOT_FOUND => Error::KeyNotFound,
            m if m.starts_with(messages::TIMEOUT) => Error::Timeout {
                message: m.to_string(),
            },
            _ => return None,
        };
        Some(err)
    }

    /// Classifies the failure; see [`Outcome`].
    ///
    /// - [`Outcome::NotApplied`]: [`Error::NoLeader`], and [`Error::Unavailable`] with
    ///   `connect_failed: true` (the request never left the client).
    /// - [`Outcome::Unknown`]: [`Error::Timeout`], [`Error::Unavailable`] after sending, and
    ///   [`Error::Other`] with a transport-like code (`UNAVAILABLE`, `UNKNOWN`, `CANCELLED`,
    ///   `ABORTED`, `INTERNAL`, `DATA_LOSS`, `DEADLINE_EXCEEDED`).
    /// - [`Outcome::Failed`]: everything else, i.e. the server's definite rejections.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::NoLeader
            | Error::Unavailable {
                connect_failed: true,
                ..
            } => Outcome::NotApplied,
            Error::Unavailable { .. }
            | Error::Timeout { .. }
            | Error::Other {
                code:
                    Code::Unavailable
                    | Code::Unknown
                    | Code::Cancelled
                    | Code::Aborted
                    | Code::Internal
                    | Code::DataLoss
                    | Code::DeadlineExceeded,
                ..
            } => Outcome::Unknown,
            _ => Outcome::Failed,
        }
    }

    /// True when re-sending the very same request is safe whatever it does, i.e.
    /// [`Error::outcome`] is [`Outcome::NotApplied`]. The client itself retries such failures
    /// (within its attempt bound) for writes too; an `Unknown` outcome is never retried for a
    /// write.
    pub fn is_retryable_safe(&self) -> bool {
        self.outcome() == Outcome::NotApplied
    }

    /// True for failures of the transport or of the member (rather than of the request):
    /// another attempt, possibly on another endpoint, may succeed. Idempotent requests
    /// (reads) are retried on these.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::NoLeader | Error::Timeout { .. } => true,
            Error::Other { code, .. } => matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Aborted | Code::Cancelled
            ),
            _ => false,
        }
    }

    /// The error for a watch the server canceled, from its `compact_revision` and
    /// `cancel_reason`.
    pub(crate) fn from_watch_cancel(compact_revision: i64, reason: &str) -> Error {
        if compact_revision > 0 {
            return Error::Compacted { compact_revision };
        }
        match Error::from_etcd_message(reason) {
            Some(Error::Compacted { .. }) => Error::Compacted {
                compact_revision: 0,
            },
            Some(err) => err,
            None => Error::WatchCanceled {
                reason: reason.to_string(),
            },
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(status)
    }
}

fn chain_has<T: StdError + 'static>(status: &Status) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(status);
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn has_connect_error(status: &Status) -> bool {
    chain_has::<crate::transport::NotSent>(status) || chain_has::<tonic::ConnectError>(status)
}

fn has_timeout_expired(status: &Status) -> bool {
    chain_has::<tonic::TimeoutExpired>(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(code: Code, msg: &str) -> Error {
        Error::from_status(Status::new(code, msg))
    }

    #[test]
    fn etcd_messages_map_to_variants() {
        assert!(matches!(
            map(Code::OutOfRange, messages::COMPACTED),
            Error::Compacted {
                compact_revision: 0
            }
        ));
        assert!(matches!(
            map(Code::OutOfRange, messages::FUTURE_REVISION),
            Error::FutureRevision
        ));
        assert!(matches!(
            map(Code::NotFound, messages::LEASE_NOT_FOUND),
            Error::LeaseNotFound
        ));
        assert!(matches!(
            map(Code::Unavailable, messages::NO_LEADER),
            Error::NoLeader
        ));
        assert!(matches!(
            map(Code::Unavailable, messages::TIMEOUT),
            Error::Timeout { .. }
        ));
        assert!(matches!(
            map(
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure"
            ),
            Error::Timeout { .. }
        ));
        assert!(matches!(
            map(Code::ResourceExhausted, messages::NO_SPACE),
            Error::NoSpace
        ));
        assert!(matches!(
            map(Code::InvalidArgument, messages::REQUEST_TOO_LARGE),
            Error::RequestTooLarge
        ));
        assert!(matches!(
            map(Code::InvalidArgument, messages::TOO_MANY_OPS),
            Error::TooManyOps
        ));
        assert!(matches!(
            map(Code::InvalidArgument, messages::DUPLICATE_KEY),
            Error::DuplicateKey
        ));
        assert!(matches!(
            map(Code::InvalidArgument, messages::KEY_NOT_FOUND),
            Error::KeyNotFound
        ));
    }

    #[test]
    fn other_statuses_map_by_code() {
        match map(Code::Unavailable, "connection reset") {
            Error::Unavailable {
                connect_failed,
                message,
            } => {
                assert!(!connect_failed);
                assert_eq!(message, "connection reset");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            map(Code::DeadlineExceeded, "deadline"),
            Error::Timeout { .. }
        ));
        match map(Code::PermissionDenied, "etcdserver: permission denied") {
            Error::Other { code, message } => {
                assert_eq!(code, Code::PermissionDenied);
                assert_eq!(message, "etcdserver: permission denied");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A near miss is not an exact etcd message.
        assert!(matches!(
            map(
                Code::OutOfRange,
                "mvcc: required revision has been compacted"
            ),
            Error::Other { .. }
        ));
    }

    #[test]
    fn connect_error_in_source_chain_means_not_sent() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let boxed: Box<dyn StdError + Send + Sync> =
            Box::new(tonic::ConnectError(Box::new(refused)));
        let status = Status::from_error(boxed);
        assert_eq!(status.code(), Code::Unavailable);
        let err = Error::from(status);
        assert!(matches!(
            err,
            Error::Unavailable {
                connect_failed: true,
                ..
            }
        ));
        assert_eq!(err.outcome(), Outcome::NotApplied);
        assert!(err.is_retryable_safe());
    }

    #[test]
    fn unsent_request_in_source_chain_means_not_sent() {
        let mut status = Status::unavailable("connect to 127.0.0.1:1: refused");
        status.set_source(std::sync::Arc::new(crate::transport::NotSent(
            "refused".into(),
        )));
        let err = Error::from(status);
        assert!(matches!(
            err,
            Error::Unavailable {
                connect_failed: true,
                ..
            }
        ));
        assert!(err.is_retryable_safe());
        // The same code after sending is not proof of anything.
        let err = Error::from(Status::unavailable("connection failed: reset"));
        assert_eq!(err.outcome(), Outcome::Unknown);
    }

    #[test]
    fn outcomes() {
        assert_eq!(Error::NoLeader.outcome(), Outcome::NotApplied);
        assert_eq!(
            Error::Timeout {
                message: String::new()
            }
            .outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            Error::Unavailable {
                message: String::new(),
                connect_failed: false
            }
            .outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            Error::Compacted {
                compact_revision: 3
            }
            .outcome(),
            Outcome::Failed
        );
        assert_eq!(Error::NoSpace.outcome(), Outcome::Failed);
        assert_eq!(
            Error::Other {
                code: Code::Internal,
                message: String::new()
            }
            .outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            Error::Other {
                code: Code::InvalidArgument,
                message: String::new()
            }
            .outcome(),
            Outcome::Failed
        );
        assert!(!Error::LeaseNotFound.is_transient());
        assert!(Error::NoLeader.is_transient());
    }

    #[test]
    fn watch_cancel_mapping() {
        assert!(matches!(
            Error::from_watch_cancel(42, ""),
            Error::Compacted {
                compact_revision: 42
            }
        ));
        assert!(matches!(
            Error::from_watch_cancel(0, messages::NO_LEADER),
            Error::NoLeader
        ));
        assert!(matches!(
            Error::from_watch_cancel(0, "some reason"),
            Error::WatchCanceled { .. }
        ));
    }
}
