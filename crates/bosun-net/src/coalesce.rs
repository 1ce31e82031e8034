//! A TCP stream whose writes go out in batches.
//!
//! HTTP/2 (h2, under tonic and axum) flushes its connection after every poll of the
//! connection's task, and under load that task is woken once per response: one `writev`
//! per response, each costing a system call, a TCP segment and, on loopback, the receiver's
//! whole receive path. [`CoalescedStream`] hands written bytes to a writer task instead; the
//! task yields once before it writes, so every response that becomes ready while it waits
//! in the runtime's queue goes out in the same system call (grpc-go's writer batches the same
//! way). An idle connection pays one task hand-off per write.
//!
//! Both sides use it: the store's listeners and peer channels, and the store SDK's
//! connections (so that the calls of many tasks leave together).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

/// Bytes a connection may have waiting for its writer before writes wait for room.
pub const CONNECTION_WRITE_BUFFER: usize = 1 << 20;

/// A TCP stream whose writes a separate task sends in batches. Reads go straight to the
/// socket. Dropping or shutting down the stream lets the writer send what is pending, then
/// shut down the socket's write side.
#[derive(Debug)]
pub struct CoalescedStream {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
    peer: std::net::SocketAddr,
}

/// What the stream and its writer task share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task.
    wake_writer: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes written and not yet taken by the writer.
    pending: Vec<u8>,
    /// A write waiting for room in `pending`.
    blocked: Option<Waker>,
    /// The writer failed: every later write fails with this.
    failed: Option<io::ErrorKind>,
    /// The stream was shut down or dropped: the writer ends once `pending` is sent.
    closing: bool,
}

impl CoalescedStream {
    /// Wraps `tcp` (setting TCP_NODELAY: batching is this stream's job, not the kernel's)
    /// and starts its writer task on the current runtime.
    pub fn new(tcp: TcpStream) -> io::Result<CoalescedStream> {
        tcp.set_nodelay(true)?;
        let peer = tcp.peer_addr()?;
        let (read, write) = tcp.into_split();
        let shared = Arc::new(Shared::default());
        tokio::spawn(write_loop(write, shared.clone()));
        Ok(CoalescedStream { read, shared, peer })
    }

    /// The address of the other end.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.peer
    }

    /// Queues `bufs` for the writer: all of them, or nothing while the queue is full.
    fn queue(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let mut st = self.shared.state.lock();
        if let Some(kind) = st.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if st.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if !st.pending.is_empty() && st.pending.len() + len > CONNECTION_WRITE_BUFFER {
            st.blocked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let was_empty = st.pending.is_empty();
        for b in bufs {
            st.pending.extend_from_slice(b);
        }
        drop(st);
        if was_empty && len > 0 {
            self.shared.wake_writer.notify_one();
        }
        Poll::Ready(Ok(len))
    }

    /// Marks the stream closing and wakes the writer to finish.
    fn close(&self) {
        self.shared.state.lock().closing = true;
        self.shared.wake_writer.notify_one();
    }
}

impl Drop for CoalescedStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// Sends what the stream queues, in batches, until the stream closes or a write fails.
async fn write_loop(mut socket: OwnedWriteHalf, shared: Arc<Shared>) {
    let mut batch = Vec::new();
    loop {
        shared.wake_writer.notified().await;
        // Let every task that is ready now run first: what they write joins this batch.
        tokio::task::yield_now().await;
        let closing = {
            let mut st = shared.state.lock();
            std::mem::swap(&mut st.pending, &mut batch);
            if let Some(w) = st.blocked.take() {
                w.wake();
            }
            st.closing
        };
        if !batch.is_empty() {
            if let Err(e) = socket.write_all(&batch).await {
                let mut st = shared.state.lock();
                st.failed = Some(e.kind());
                if let Some(w) = st.blocked.take() {
                    w.wake();
                }
                return;
            }
            // Keep the allocation for the next batch unless one burst made it large.
            batch.clear();
            if batch.capacity() > CONNECTION_WRITE_BUFFER {
                batch = Vec::new();
            }
        }
        if closing {
            // Bytes queued between the swap above and now are sent before the shutdown.
            let rest = std::mem::take(&mut shared.state.lock().pending);
            if !rest.is_empty() {
                let _ = socket.write_all(&rest).await;
            }
            let _ = socket.shutdown().await;
            return;
        }
    }
}

impl AsyncRead for CoalescedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.queue(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.queue(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Queued bytes belong to the writer task, which sends them without further calls.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.shared.state.lock().failed {
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Bytes written in many small writes arrive complete and in order, and the peer sees
    /// end-of-stream after a shutdown.
    #[tokio::test]
    async fn writes_arrive_in_order_then_eof() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).await?;
            anyhow::Ok(got)
        });
        let (tcp, _) = listener.accept().await?;
        let mut s = CoalescedStream::new(tcp)?;
        let mut want = Vec::new();
        for i in 0..5000u32 {
            let chunk = i.to_be_bytes().repeat(1 + (i % 97) as usize);
            s.write_all(&chunk).await?;
            if i % 7 == 0 {
                s.flush().await?;
            }
            want.extend_from_slice(&chunk);
        }
        s.shutdown().await?;
        let got = client.await??;
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
        Ok(())
    }

    /// While the other end does not read, writes wait for room instead of growing the
    /// queue past its bound; everything arrives once the other end reads.
    #[tokio::test]
    async fn a_full_queue_waits_for_the_writer() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (accepted, client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
        let (server, _) = accepted?;
        let mut client = client?;
        let mut s = CoalescedStream::new(server)?;
        let chunk = vec![7u8; CONNECTION_WRITE_BUFFER / 4];
        let chunks = 64;
        let shared = s.shared.clone();
        let writer = tokio::spawn(async move {
            for _ in 0..chunks {
                s.write_all(&chunk).await?;
            }
            s.shutdown().await?;
            anyhow::Ok(())
        });
        // Nothing reads for a while: the socket's buffers fill, then the queue.
        let mut largest = 0;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(4)).await;
            largest = largest.max(shared.state.lock().pending.len());
        }
        assert!(
            largest <= CONNECTION_WRITE_BUFFER,
            "queue grew to {largest} bytes"
        );
        assert!(!writer.is_finished(), "16 MiB fit without anyone reading");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await?;
        writer.await??;
        assert_eq!(got.len(), chunks * CONNECTION_WRITE_BUFFER / 4);
        assert!(got.iter().all(|b| *b == 7));
        Ok(())
    }
}
