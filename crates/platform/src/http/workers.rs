//! Serving on dedicated workers: one thread per core, each with a single-threaded runtime, fed
//! connections by the accept loop of `serve` on the caller's runtime. The gateway serves this way;
//! a service does when `http_workers` is set ([`super::serve_on`]). [`ConnectionHandler`] lets a
//! proxy serve a connection itself and hand hyper only what it leaves to the router.

use std::cell::Cell;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::guard::GuardedIo;
use super::limits::ConnectionLimits;
use super::serve::{accept_until, serve_http1};

thread_local! {
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the dedicated HTTP worker running on this thread ([`serve_dedicated`]), or `None` on
/// any other thread. Lets a handler keep per-worker state, such as a connection pool whose
/// connections live on the worker's own runtime.
pub fn worker_index() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// How many dedicated workers a setting of `configured` means: 0 is one per available core.
pub fn worker_count(configured: usize) -> NonZeroUsize {
    NonZeroUsize::new(configured)
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
}

/// A connection accepted on the listener, on its way to a worker, with its slot among the listener's
/// `max_connections`.
type Accepted = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// What a dedicated worker does with each connection it is dealt: [`Http1`] serves the router with hyper;
/// a proxy may read the connection itself and hand it to [`serve_http1`] when it meets a request it
/// leaves to the router. The future runs on the worker's own runtime for the connection's whole life.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves `stream` until the peer is done or `shutdown` fires; then lets the request in flight
    /// finish and closes.
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()>;
}

/// The plain handler: every connection served by hyper with the router, under the limits.
pub struct Http1(pub Router, pub ConnectionLimits);

impl ConnectionHandler for Http1 {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()> {
        let io = GuardedIo::new(stream, self.1);
        Box::pin(serve_http1(io, peer, self.0.clone(), shutdown))
    }
}

/// Serves `router` like [`serve`], but on `workers` threads that each run a single-threaded runtime:
/// the calling runtime only accepts, and deals connections round-robin to the workers, where each
/// connection and everything its requests spawn stays for its whole life.
///
/// Why: on the shared multi-threaded runtime a request's tasks (the connection, the handler, a pooled
/// upstream connection) wake each other across threads, with a futex call and a stolen task each time;
/// for a proxy that is a large part of the cost of a request. A worker never hands a task to another
/// thread, so those wake-ups are queue pushes. Handlers may still use resources of another runtime (a
/// database pool, say), at the cost of cross-thread wake-ups: PostgreSQL reads measured slower this way
/// (docs/benchmarks.md), which is why the services default to [`serve`]. A pooled connection opened by a
/// handler belongs to its worker's runtime and breaks when the workers stop at shutdown.
///
/// [`serve`]: super::serve::serve
pub async fn serve_dedicated(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    workers: NonZeroUsize,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    serve_dedicated_with(
        listener,
        std::sync::Arc::new(Http1(router, limits)),
        shutdown,
        grace,
        workers,
        limits.max_connections,
    )
    .await
}

/// [`serve_dedicated`] with connections served by `handler` instead of hyper and a router, at most
/// `max_connections` at once.
pub async fn serve_dedicated_with(
    listener: TcpListener,
    handler: std::sync::Arc<dyn ConnectionHandler>,
    shutdown: CancellationToken,
    grace: Duration,
    workers: NonZeroUsize,
    max_connections: usize,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let mut queues = Vec::with_capacity(workers.get());
    let mut finished = Vec::with_capacity(workers.get());
    for index in 0..workers.get() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (queue, incoming) = mpsc::unbounded_channel::<Accepted>();
        let (done, done_signal) = oneshot::channel::<()>();
        let worker = Worker {
            handler: handler.clone(),
            grace,
            address,
        };
        std::thread::Builder::new()
            .name(format!("http-worker-{index}"))
            .spawn(move || {
                WORKER_INDEX.with(|cell| cell.set(Some(index)));
                runtime.block_on(worker.run(incoming));
                // The receiver is gone only if `serve_dedicated` itself was dropped: nothing to tell.
                let _ = done.send(());
            })?;
        queues.push(queue);
        finished.push(done_signal);
    }
    tracing::info!(%address, workers = workers.get(), "listening");

    let mut next = 0;
    accept_until(listener, &shutdown, max_connections, |stream, peer, slot| {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand an accepted connection to a worker");
                return true;
            }
        };
        if queues[next].send((stream, peer, slot)).is_err() {
            // Only a panic ends a worker before shutdown; serving on without it would leave every
            // connection dealt to it unanswered.
            tracing::error!(%address, worker = next, "an HTTP worker is gone; stopping the server");
            return false;
        }
        next = (next + 1) % queues.len();
        true
    })
    .await;
    drop(queues);
    for done in finished {
        // An error means the worker thread panicked; the others still drain.
        let _ = done.await;
    }
    tracing::info!(%address, "drained");
    Ok(())
}

/// One dedicated worker's share of a server. It serves what the accept loop deals it until the loop
/// stops (on shutdown, dropping the queue), then drains.
struct Worker {
    handler: std::sync::Arc<dyn ConnectionHandler>,
    grace: Duration,
    address: SocketAddr,
}

impl Worker {
    async fn run(self, mut incoming: mpsc::UnboundedReceiver<Accepted>) {
        let connections = TaskTracker::new();
        let draining = CancellationToken::new();
        // Tokio's timer wakes its own runtime through an eventfd (a `write` system call) whenever a
        // timer is registered while the driver is parked with no timer due before it, which for a proxy
        // is every request deadline set after the worker went idle: 0.3 writes per request measured.
        // A timer always pending a second ahead keeps the driver's next wake earlier than any request
        // deadline of a second or more, for one wake-up a second.
        let keep_timer_armed = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        // `into_std` left the socket non-blocking, as `from_std` needs it.
        while let Some((stream, peer, slot)) = incoming.recv().await {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take over an accepted connection");
                    continue;
                }
            };
            let connection = self.handler.serve(stream, peer, draining.clone());
            connections.spawn(async move {
                connection.await;
                drop(slot);
            });
        }
        keep_timer_armed.abort();
        draining.cancel();
        connections.close();
        tokio::select! {
            () = connections.wait() => {}
            () = tokio::time::sleep(self.grace) => {
                tracing::warn!(
                    address = %self.address,
                    grace_ms = self.grace.as_millis() as u64,
                    "grace period over, closing open connections"
                );
            }
        }
    }
}
