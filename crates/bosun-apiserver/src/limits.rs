//! The apiserver's size limits, decided in one place and derived from each other.
//!
//! - **Request body cap** (`--max-request-bytes`, Kubernetes' default of 3 MiB): the most a
//!   client may send in one request, REST body or gRPC message. A larger body is refused with
//!   413 before it is read further.
//! - **Largest object** ([`Limits::max_object_bytes`]): the store refuses a request above its
//!   own `--max-request-bytes` (1.5 MiB by default, in Bosun's store as in etcd), told to the
//!   apiserver by `--etcd-max-request-bytes`. An object travels in a txn request with its key
//!   twice (compare and put) and the protobuf framing, so the largest object is that limit
//!   less [`TXN_OVERHEAD_BYTES`]. Every create, update and patch checks the encoded object
//!   against it and answers 413 with the limit, before the store is asked.
//! - **Store client messages**: requests are capped at the store's limit plus the 512 KiB of
//!   gRPC overhead the store (and etcd) accept on top of it, so nothing larger than the store
//!   takes is ever put on the wire; responses (a list may hold many objects) at
//!   [`STORE_RESPONSE_BYTES`].
//! - **JSON patch copies** ([`Limits::patch_copy_bytes`]): Kubernetes bounds the bytes a
//!   patch's `copy` operations may add by the request body cap (`JSONPatchMaxCopyBytes`
//!   defaults to `MaxRequestBodyBytes`); so does Bosun. A patch can then grow an object by at
//!   most its own size plus that budget, and the result still meets the object limit.

/// The store's (and etcd's) default `--max-request-bytes`.
pub const DEFAULT_STORE_REQUEST_BYTES: usize = 1536 * 1024;

/// Kubernetes' default request body cap (`MaxRequestBodyBytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// Room in a store request for everything but the object: the key in the compare and in the
/// put (a key is at most the prefix, the resource, a 63-byte namespace and a 253-byte name),
/// an Event's lease and the protobuf framing.
pub const TXN_OVERHEAD_BYTES: usize = 4 * 1024;

/// gRPC overhead the store (like etcd) accepts on top of its `--max-request-bytes`.
pub const STORE_GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Largest store response the apiserver reads (an unpaged list of a big collection).
pub const STORE_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Most operations in one JSON patch (Kubernetes' `maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The limits in force, derived from the two flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted (REST body or gRPC message).
    pub max_request_bytes: usize,
    /// Largest request the store accepts (its `--max-request-bytes`).
    pub store_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            store_request_bytes: DEFAULT_STORE_REQUEST_BYTES,
        }
    }
}

impl Limits {
    /// Largest encoded object written to the store.
    pub fn max_object_bytes(&self) -> usize {
        self.store_request_bytes.saturating_sub(TXN_OVERHEAD_BYTES)
    }

    /// Largest message the store client sends.
    pub fn store_client_request_bytes(&self) -> usize {
        self.store_request_bytes + STORE_GRPC_OVERHEAD_BYTES
    }

    /// Bytes the `copy` operations of one JSON patch may add together.
    pub fn patch_copy_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// The refusal of a body over the cap, in Kubernetes' words.
    pub fn body_too_large(&self) -> crate::error::Status {
        crate::error::Status::too_large(format!(
            "Request entity too large: limit is {}",
            self.max_request_bytes
        ))
    }

    /// Refuses an encoded object the store would not take.
    pub fn check_object(&self, encoded_len: usize) -> crate::error::ApiResult<()> {
        let max = self.max_object_bytes();
        if encoded_len > max {
            return Err(crate::error::Status::too_large(format!(
                "Request entity too large: the object is {encoded_len} bytes; the store takes objects of at most {max} bytes"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_derive_from_the_two_flags() {
        let l = Limits::default();
        assert_eq!(l.max_object_bytes(), 1536 * 1024 - 4096);
        assert_eq!(l.store_client_request_bytes(), 2 * 1024 * 1024);
        assert_eq!(l.patch_copy_bytes(), 3 * 1024 * 1024);
        assert!(l.check_object(l.max_object_bytes()).is_ok());
        let e = l.check_object(2_200_354).unwrap_err();
        assert_eq!((e.code, e.reason), (413, "RequestEntityTooLarge"));
        assert_eq!(
            e.message,
            "Request entity too large: the object is 2200354 bytes; the store takes objects of at most 1568768 bytes"
        );
        assert_eq!(
            l.body_too_large().message,
            "Request entity too large: limit is 3145728"
        );
    }
}
