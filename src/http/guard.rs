//! The HTTP admin listener's connections, accepted with the gRPC listener's care:
//! - at most `max_connections` at once: past it, new ones wait in the kernel's backlog, so the
//!   admin port can never take the descriptors the decision port needs;
//! - each request's head must be complete within `head_timeout` of the connection's start or of
//!   the previous head: a client dripping one header line every few seconds, or holding a
//!   kept-alive connection idle, is closed (browsers and Prometheus reconnect).
//!
//! Not here: TLS (`tls::TlsListener`, which bounds handshakes) or what is served.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How the HTTP listener admits connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub head_timeout: Duration,
}

/// A listener whose connections are capped and must send request heads in time.
pub struct Guarded<L> {
    inner: L,
    slots: Arc<Semaphore>,
    head_timeout: Duration,
}

impl<L> Guarded<L> {
    pub fn new(inner: L, limits: HttpLimits) -> Guarded<L> {
        Guarded {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            head_timeout: limits.head_timeout,
        }
    }
}

impl<L: Listener> Listener for Guarded<L> {
    type Io = Paced<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (io, addr) = self.inner.accept().await;
        let paced = Paced {
            io,
            _permit: permit,
            head_timeout: self.head_timeout,
            deadline: Box::pin(tokio::time::sleep(self.head_timeout)),
            matched: 0,
        };
        (paced, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The end of a request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// A connection holding its slot until dropped, closed when a request head is late.
pub struct Paced<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    head_timeout: Duration,
    /// When the head being read must be complete.
    deadline: Pin<Box<Sleep>>,
    /// How much of `HEAD_END` the bytes read so far end with.
    matched: usize,
}

/// Whether `bytes` complete a request head; `matched` carries how much of `HEAD_END` the
/// bytes before them ended with (the end may span reads).
fn completes_a_head(matched: &mut usize, bytes: &[u8]) -> bool {
    let mut completed = false;
    for &b in bytes {
        if b == HEAD_END[*matched] {
            *matched += 1;
            if *matched == HEAD_END.len() {
                completed = true;
                *matched = 0;
            }
        } else {
            *matched = usize::from(b == b'\r');
        }
    }
    completed
}

impl<T: AsyncRead + Unpin> AsyncRead for Paced<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let this = &mut *self;
        if let Poll::Ready(Ok(())) = polled
            && completes_a_head(&mut this.matched, &buf.filled()[before..])
        {
            let next = Instant::now() + this.head_timeout;
            this.deadline.as_mut().reset(next);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head on the connection in time",
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Paced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_found_across_reads() {
        let mut matched = 0;
        // (bytes read, whether they complete a head)
        for (bytes, completes) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], false),
            (b"\r", false),
            (b"\n", true),
            (b"GET /metrics HTTP/1.1\r\n\r", false),
            (b"\n", true),
            (b"\r\n\r\r\n\r\n", true),
            (b"X-Drip: 1\r\n", false),
        ] {
            assert_eq!(
                completes_a_head(&mut matched, bytes),
                completes,
                "{bytes:?}"
            );
        }
    }
}
