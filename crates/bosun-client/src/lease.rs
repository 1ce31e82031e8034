//! Leases: grant, revoke, inspect, and keep alive.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bosun_proto::etcdserverpb as pb;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::client::{Client, Idempotency, require_leader};
use crate::error::Error;

/// The sending half of a lease keep-alive stream; see [`Client::lease_keep_alive`].
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    id: i64,
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
}

impl LeaseKeeper {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Sends one keep-alive; its answer arrives on the [`LeaseKeepAliveStream`].
    pub async fn keep_alive(&mut self) -> Result<(), Error> {
        self.tx
            .send(pb::LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| Error::Unavailable {
                message: "lease keep-alive stream closed".into(),
                connect_failed: false,
            })
    }
}

/// The receiving half of a lease keep-alive stream: one response per keep-alive sent. A
/// response with `ttl <= 0` means the lease no longer exists.
#[derive(Debug)]
pub struct LeaseKeepAliveStream {
    inner: tonic::Streaming<pb::LeaseKeepAliveResponse>,
}

impl LeaseKeepAliveStream {
    /// The next response; `Ok(None)` when the server closed the stream.
    pub async fn message(&mut self) -> Result<Option<pb::LeaseKeepAliveResponse>, Error> {
        self.inner.message().await.map_err(Error::from)
    }
}

impl futures::Stream for LeaseKeepAliveStream {
    type Item = Result<pb::LeaseKeepAliveResponse, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map_err(Error::from)))
    }
}

/// What a [`KeepAliveHandle`] knows about its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// The last keep-alive succeeded; `ttl` is the remaining TTL (seconds) it reported.
    Alive {
        /// Remaining TTL in seconds.
        ttl: i64,
    },
    /// Keep-alives are failing for transport reasons and are being retried; the lease may
    /// still be alive.
    Retrying {
        /// The last failure.
        error: String,
    },
    /// The lease is gone: the server answered TTL 0 or "lease not found", or no keep-alive
    /// succeeded for a whole TTL (so the server has, barring a leader change, expired it).
    /// Terminal: keys attached to it must be assumed deleted.
    Lost,
}

/// Keeps a lease alive in the background; see [`Client::spawn_keep_alive`]. Dropping the
/// handle stops the keep-alives (it does not revoke the lease).
#[derive(Debug)]
pub struct KeepAliveHandle {
    id: i64,
    state: watch::Receiver<LeaseState>,
    task: JoinHandle<()>,
}

impl KeepAliveHandle {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The current state.
    pub fn state(&self) -> LeaseState {
        self.state.borrow().clone()
    }

    /// True once the lease is known to be gone.
    pub fn is_lost(&self) -> bool {
        matches!(*self.state.borrow(), LeaseState::Lost)
    }

    /// Waits until the lease is gone (returns at once if it already is).
    pub async fn lost(&mut self) {
        loop {
            if matches!(*self.state.borrow_and_update(), LeaseState::Lost) {
                return;
            }
            if self.state.changed().await.is_err() {
                // The keep-alive task is gone; nothing renews the lease any more.
                return;
            }
        }
    }

    /// A receiver of state changes, e.g. to `select!` on.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }
}

impl Drop for KeepAliveHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keep-alive period for a TTL in seconds: a third of it, at least 100 ms.
pub(crate) fn keep_alive_interval(ttl: i64) -> Duration {
    let ms = u64::try_from(ttl.max(0)).unwrap_or(0).saturating_mul(1000) / 3;
    Duration::from_millis(ms.max(100))
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl.max(1)).unwrap_or(1))
}

impl Client {
    /// Grants a lease of `ttl` seconds; `id` 0 lets the server choose the ID. Not retried
    /// unless provably not applied.
    pub async fn lease_grant(&self, ttl: i64, id: i64) -> Result<pb::LeaseGrantResponse, Error> {
        let inner = &self.inner;
        let resp = self
            .call(Idempotency::NotIdempotent, |ch| async move {
                inner
                    .lease(ch)
                    .lease_grant(pb::LeaseGrantRequest { ttl, id })
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        if !resp.error.is_empty() {
            return Err(
                Error::from_etcd_message(&resp.error).unwrap_or(Error::Other {
                    code: tonic::Code::Unknown,
                    message: resp.error,
                }),
            );
        }
        Ok(resp)
    }

    /// Revokes a lease, deleting its keys. Not retried unless provably not applied.
    pub async fn lease_revoke(&self, id: i64) -> Result<pb::LeaseRevokeResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .lease(ch)
                .lease_revoke(pb::LeaseRevokeRequest { id })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// A lease's remaining and granted TTL, and with `keys` its attached keys. Retried.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<pb::LeaseTimeToLiveResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .lease(ch)
                .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// All leases. Retried.
    pub async fn lease_leases(&self) -> Result<pb::LeaseLeasesResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .lease(ch)
                .lease_leases(pb::LeaseLeasesRequest {})
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Opens a keep-alive stream for a lease and sends the first keep-alive. Send more with
    /// [`LeaseKeeper::keep_alive`] and read the answers from the stream. The stream is not
    /// re-established when it breaks; for that use [`Client::spawn_keep_alive`].
    pub async fn lease_keep_alive(
        &self,
        id: i64,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveStream), Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            let (tx, rx) = mpsc::channel(16);
            tx.try_send(pb::LeaseKeepAliveRequest { id })
                .map_err(|_| tonic::Status::internal("keep-alive channel full"))?;
            let resp = inner
                .lease(ch)
                .lease_keep_alive(require_leader(ReceiverStream::new(rx)))
                .await?;
            Ok((
                LeaseKeeper { id, tx },
                LeaseKeepAliveStream {
                    inner: resp.into_inner(),
                },
            ))
        })
        .await
    }

    /// Keeps lease `id` (granted with `ttl` seconds) alive in a background task: a keep-alive
    /// every TTL/3, the stream re-established (with back-off, on the next endpoint) when it
    /// breaks. The handle reports the lease's [`LeaseState`]; the task stops when the lease
    /// is [`LeaseState::Lost`] or the handle is dropped. Must be called inside a Tokio
    /// runtime.
    pub fn spawn_keep_alive(&self, id: i64, ttl: i64) -> KeepAliveHandle {
        let (tx, rx) = watch::channel(LeaseState::Alive { ttl });
        let task = tokio::spawn(keep_alive_task(self.clone(), id, ttl, tx));
        KeepAliveHandle {
            id,
            state: rx,
            task,
        }
    }
}

async fn keep_alive_task(client: Client, id: i64, mut ttl: i64, state: watch::Sender<LeaseState>) {
    let opts = client.inner.opts.clone();
    let mut backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
    let mut last_ok = Instant::now();
    let retrying = |error: String| {
        tracing::debug!(lease = id, %error, "keep-alive failing");
        state.send_replace(LeaseState::Retrying { error });
    };
    loop {
        if last_ok.elapsed() >= ttl_duration(ttl) {
            tracing::warn!(lease = id, "no keep-alive succeeded within the lease TTL");
            state.send_replace(LeaseState::Lost);
            return;
        }
        match client.lease_keep_alive(id).await {
            Ok((mut keeper, mut stream)) => loop {
                let interval = keep_alive_interval(ttl);
                let wait = interval.max(Duration::from_secs(1));
                match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(resp))) => {
                        if resp.ttl <= 0 {
                            state.send_replace(LeaseState::Lost);
                            return;
                        }
                        ttl = resp.ttl;
                        last_ok = Instant::now();
                        backoff.reset();
                        state.send_replace(LeaseState::Alive { ttl });
                    }
                    Ok(Ok(None)) => {
                        retrying("keep-alive stream closed by server".into());
                        break;
                    }
                    Ok(Err(Error::LeaseNotFound)) => {
                        state.send_replace(LeaseState::Lost);
                        return;
                    }
                    Ok(Err(e)) => {
                        retrying(e.to_string());
                        break;
                    }
                    Err(_) => {
                        retrying(format!("no keep-alive response within {wait:?}"));
                        break;
                    }
                }
                tokio::time::sleep(interval).await;
                if let Err(e) = keeper.keep_alive().await {
                    retrying(e.to_string());
                    break;
                }
            },
            Err(Error::LeaseNotFound) => {
                state.send_replace(LeaseState::Lost);
                return;
            }
            Err(e) => retrying(e.to_string()),
        }
        let remaining = ttl_duration(ttl).saturating_sub(last_ok.elapsed());
        tokio::time::sleep(backoff.next_delay().min(remaining)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_third_of_ttl() {
        assert_eq!(keep_alive_interval(30), Duration::from_secs(10));
        assert_eq!(keep_alive_interval(1), Duration::from_millis(333));
        assert_eq!(keep_alive_interval(0), Duration::from_millis(100));
        assert_eq!(keep_alive_interval(-5), Duration::from_millis(100));
        assert_eq!(ttl_duration(0), Duration::from_secs(1));
    }
}
