//! The gRPC listener's connections, accepted with care:
//! - at most `max_connections` at once: past it, new connections wait in the kernel's backlog
//!   rather than each costing a task and buffers;
//! - a connection on which no request has arrived within `first_byte_timeout` of being accepted
//!   is closed (an idle socket must not hold a slot for ever; nor one that sent a byte, the
//!   HTTP/2 preface or pings and then nothing that is a request). A request arriving is told
//!   through the connection's [`ConnInfo`], which tonic hands each request ([`mark_served`]);
//! - a peer that vanishes is found by TCP keepalive ([`KEEPALIVE`]) and its connection closed.
//!   The kernel's probes, not HTTP/2 pings: with pings configured hyper reads the clock and
//!   takes a mutex on every frame received and every poll of the connection, ~1% of a
//!   decision's CPU (perf, December 2026), to watch for something that happens once a day;
//! - an accept that fails (out of file descriptors, say) is retried after a growing pause, up to
//!   a second, instead of at once in a loop that burns a core and starves the clients already in.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Probes after 30 s without traffic, then every 10 s; after 3 unanswered the kernel closes
/// the connection (a dead peer is gone within about a minute).
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(30))
    .with_interval(Duration::from_secs(10))
    .with_retries(3);

/// How connections are admitted.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub first_byte_timeout: Duration,
}

/// Accepted connections, as a stream for `serve_with_incoming_shutdown`.
pub fn accept(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<Guarded>> {
    use futures::StreamExt;
    admitted(listener, limits).map(move |(tcp, permit)| Ok(Guarded::new(tcp, permit, limits)))
}

/// A connection admitted under `max_connections`, not yet guarded: its slot comes with it.
pub type Admitted = (TcpStream, OwnedSemaphorePermit);

/// Connections as they are accepted, each holding its slot (at most `max_connections` at
/// once), with their socket options set; failed accepts are retried after a growing pause.
pub fn admitted(listener: TcpListener, limits: ConnectionLimits) -> impl Stream<Item = Admitted> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    futures::stream::unfold(
        (listener, slots, Duration::ZERO),
        move |(listener, slots, mut backoff)| async move {
            loop {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&KEEPALIVE);
                        return Some(((tcp, permit), (listener, slots, Duration::ZERO)));
                    }
                    Err(e) => {
                        drop(permit);
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                        tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "gRPC listener: accept failed; pausing");
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        },
    )
}

/// A connection holding its slot until it is dropped, closed if its first request is late.
pub struct Guarded {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Set when a request arrives on the connection (`mark_served`).
    served: Arc<AtomicBool>,
    /// Until the first request arrives.
    first_request: Option<Pin<Box<Sleep>>>,
}

/// What tonic hands each request about its connection: the addresses, and the flag that tells
/// the connection a request arrived.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    tcp: TcpConnectInfo,
    served: Arc<AtomicBool>,
}

impl ConnInfo {
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.tcp.remote_addr()
    }
}

impl Guarded {
    /// Guards an admitted connection; its first-request clock starts now, on the runtime
    /// that will serve it.
    pub fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, limits: ConnectionLimits) -> Guarded {
        Guarded {
            tcp,
            _permit: permit,
            served: Arc::default(),
            first_request: Some(Box::pin(tokio::time::sleep(limits.first_byte_timeout))),
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            tcp: self.tcp.connect_info(),
            served: self.served.clone(),
        }
    }
}

/// The connection a request came on (with or without TLS).
fn conn_info<B>(request: &tonic::codegen::http::Request<B>) -> Option<&ConnInfo> {
    let extensions = request.extensions();
    extensions.get::<ConnInfo>().or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
            .map(|tls| tls.get_ref())
    })
}

/// A layer's function: tells the request's connection that a request arrived (it is no
/// longer closed for silence).
pub fn mark_served<B>(
    request: tonic::codegen::http::Request<B>,
) -> tonic::codegen::http::Request<B> {
    if let Some(info) = conn_info(&request) {
        info.served.store(true, Ordering::Relaxed);
    }
    request
}

/// The caller's address, as the connection knows it.
pub fn remote_addr<T>(request: &tonic::Request<T>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ConnInfo>()
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                .map(|tls| tls.get_ref())
        })
        .and_then(ConnInfo::remote_addr)
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.first_request.is_some() {
            if self.served.load(Ordering::Relaxed) {
                self.first_request = None;
            } else if self
                .first_request
                .as_mut()
                .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
            {
                // Bytes that are not a request (one byte, the preface, pings) do not count.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request on the connection in time",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
