//! Serving the gRPC listener's connections from several threads, each running its own
//! current-thread runtime: one thread accepts (on the main runtime) and hands each connection,
//! whole, to the next serving thread in turn.
//!
//! Why: on a node whose cores are shared (with the proxy, other pods), tokio's multi-thread
//! scheduler's tail is long — a finished handler's connection task is run next on its own
//! (the LIFO slot) and tasks move between workers — while the current-thread scheduler finishes
//! every ready handler first and writes their responses together (`runtime`'s module docs; the
//! figures are in docs/performance.md). Threads that each own their connections keep that on
//! every core. A connection stays on the thread it was given: Envoy spreads its calls over
//! connections (one or more per worker), so the threads share the load when the peers do.
//!
//! Not here: what is served (`server`), or how connections are admitted and guarded
//! (`incoming`). The learning loop, the HTTP listener and every background task stay on the
//! main runtime.

use std::sync::Arc;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::server::HealthReporter;

use super::incoming::{self, ConnectionLimits, Guarded};
use super::server::{ServeError, SharedServices, serve_connections};

/// Connections waiting for a serving thread, per thread: the accept loop waits when a thread
/// is this far behind, as it would at `max_connections`.
const HANDOFF: usize = 64;

/// A connection handed to a serving thread, with its slot.
type Handed = (std::net::TcpStream, tokio::sync::OwnedSemaphorePermit);

/// Serves `listener` from `threads` serving threads until `shutdown` completes, then drains
/// every thread's calls in flight and joins the threads.
pub(super) async fn serve(
    threads: usize,
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    health: HealthReporter,
    services: Arc<SharedServices>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (stop, stopped) = watch::channel(false);
    // A thread that ends before the shutdown (its TLS refused by rustls, say) ends the serving:
    // its connections would otherwise be handed to nobody.
    let (ended, mut thread_ended) = mpsc::channel::<()>(threads.max(1));
    let mut handoffs = Vec::with_capacity(threads);
    let mut joins = Vec::with_capacity(threads);
    for index in 0..threads {
        let (handoff, connections) = mpsc::channel::<Handed>(HANDOFF);
        handoffs.push(handoff);
        let (tls, health, services, mut stopped, done) = (
            tls.clone(),
            health.clone(),
            services.clone(),
            stopped.clone(),
            ended.clone(),
        );
        let join = std::thread::Builder::new()
            .name(format!("sluice-grpc-{index}"))
            .spawn(move || -> Result<(), ServeError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ServeError::Runtime)?;
                let served = runtime.block_on(async move {
                    // Registered with this thread's runtime: its reactor serves it from now on.
                    let incoming = ReceiverStream::new(connections).filter_map(
                        move |(tcp, permit)| async move {
                            let tcp = tokio::net::TcpStream::from_std(tcp).ok()?;
                            Some(Ok(Guarded::new(tcp, permit, limits)))
                        },
                    );
                    serve_connections(tls, &health, &services, incoming, async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
                });
                let _ = done.try_send(());
                served
            })
            .map_err(ServeError::Runtime)?;
        joins.push(join);
    }
    let admitted = incoming::admitted(listener, limits);
    tokio::pin!(admitted);
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = thread_ended.recv() => break,
            Some((tcp, permit)) = admitted.next() => {
                // Out of the main runtime's reactor, to be registered with the thread's.
                let Ok(tcp) = tcp.into_std() else { continue };
                let handoff = &handoffs[next % threads];
                next = next.wrapping_add(1);
                let _ = handoff.send((tcp, permit)).await;
            }
        }
    }
    drop(ended);
    tracing::info!("shutting down: draining in-flight calls");
    let _ = stop.send(true);
    drop(handoffs);
    let mut outcome = Ok(());
    for join in joins {
        let joined = tokio::task::spawn_blocking(move || join.join())
            .await
            .expect("joining a thread does not panic");
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => outcome = outcome.and(Err(e)),
            Err(_) => tracing::error!("a gRPC serving thread panicked"),
        }
    }
    outcome
}
