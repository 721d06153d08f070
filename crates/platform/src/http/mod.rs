//! Server bootstrap: the layers every service shares, the operations routes, and serving on a given
//! listener until a shutdown token fires, then draining in-flight requests within a grace period.
//!
//! Two ways to serve: [`serve`] runs connections on the caller's (multi-threaded) runtime, beside the
//! service's background work; [`serve_dedicated`] runs them on single-threaded runtimes of their own, one
//! per core, for a proxy whose every request is a few microseconds of work (see its comment).
//!
//! Every connection of both lives under the listener's [`ConnectionLimits`]: at most `max_connections`
//! at once (more are closed as they are accepted), and a [`GuardedIo`] between the socket and hyper
//! that times each wait and answers heads over the limits itself (see `guard`).
//!
//! The files, by responsibility: `layers` is what every service puts around its router; `serve` is
//! the shutdown signal, the accept loop and serving on the shared runtime; `workers` is serving on
//! dedicated per-core runtimes, which only the gateway uses by default. `guard`, `limits`, `timed` and
//! `chunked` are the connection-level limits both ways of serving apply. Everything public is
//! re-exported here, so callers name `platform::http::…` whichever file an item lives in.

mod chunked;
mod guard;
mod layers;
mod limits;
mod serve;
mod timed;
mod workers;

pub use chunked::ChunkedScanner;
pub use guard::GuardedIo;
pub use layers::{PlatformLayers, not_found, with_platform_layers, with_request_layers};
pub use limits::{ConnectionLimits, HeadRefusal};
pub use serve::{Prefixed, serve, serve_http1, serve_on, shutdown_signal};
pub use timed::TimedIo;
pub use workers::{
    ConnectionHandler, Http1, serve_dedicated, serve_dedicated_with, worker_count, worker_index,
};
