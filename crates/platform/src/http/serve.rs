//! Serving on the caller's runtime: the shutdown signal, the accept loop that holds a listener to its
//! connection limit (shared with dedicated workers), [`serve`] with its graceful drain, and
//! [`serve_http1`], which serves one connection with hyper whichever runtime it runs on.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use super::guard::{self, GuardedIo};
use super::limits::ConnectionLimits;
use super::workers::serve_dedicated;

/// A token cancelled on SIGTERM or SIGINT; every server and background worker watches it.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        trigger.cancel();
    });
    token
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting and lets in-flight requests
/// finish for at most `grace` before dropping what is left. Connections live under `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    let connections = TaskTracker::new();
    let draining = CancellationToken::new();
    accept_until(
        listener,
        &shutdown,
        limits.max_connections,
        |stream, peer, slot| {
            let io = serve_http1(
                GuardedIo::new(stream, limits),
                peer,
                router.clone(),
                draining.clone(),
            );
            connections.spawn(async move {
                io.await;
                drop(slot);
            });
            true
        },
    )
    .await;
    draining.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!(%address, "drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(%address, grace_ms = grace.as_millis() as u64, "grace period over, closing open connections");
        }
    }
    Ok(())
}

/// Accepts connections until `shutdown` fires or `serve` declines one, handing each to `serve` with its
/// slot among `max_connections`; then closes the listener, so connections made during the drain are
/// refused rather than left in the backlog unserved.
///
/// A connection beyond `max_connections` is closed as soon as it is accepted: the established ones keep
/// being served, and the excess learns at once that it must try later (or elsewhere) rather than wait
/// in the backlog.
pub(super) async fn accept_until(
    listener: TcpListener,
    shutdown: &CancellationToken,
    max_connections: usize,
    mut serve: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit) -> bool,
) {
    let address = listener.local_addr().ok();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut full = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or a connection reset before it was accepted: keep serving
                // the others, and do not spin if the condition persists.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    ?address,
                    max_connections,
                    "connection limit reached; closing new connections"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        // Responses are written whole; without this a small one can wait for the peer's ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        if !serve(stream, peer, slot) {
            break;
        }
    }
    drop(listener);
}

/// [`serve`] when `workers` is `None`, else [`serve_dedicated`] with that many workers.
pub async fn serve_on(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
    workers: Option<NonZeroUsize>,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    match workers {
        None => serve(listener, router, shutdown, grace, limits).await,
        Some(workers) => serve_dedicated(listener, router, shutdown, grace, workers, limits).await,
    }
}
/// Serves one HTTP/1.1 connection with the router until the peer closes it, `shutdown` fires or the
/// connection breaks its limits ([`GuardedIo`]); then the request in flight finishes and keep-alive
/// ends. The connection may be one some of whose bytes were already read ([`Prefixed`]).
pub async fn serve_http1<I>(
    io: GuardedIo<I>,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().call(request)
    });
    let limits = *io.limits();
    let ending = io.ending();
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The guard gives hyper whole heads only, and times the wait for them itself (idle, then the
        // head); hyper's own timer, which runs over both, is a backstop that never fires first.
        .header_read_timeout(limits.keep_alive_timeout + limits.header_read_timeout)
        .max_headers(guard::MAX_HEADERS)
        .max_header_size(limits.max_head_bytes)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = ending.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A connection whose first bytes were already read: they are read again first, then the stream.
pub struct Prefixed<S> {
    prefix: bytes::Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: bytes::Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
