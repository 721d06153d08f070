//! The building blocks every LogiCore service shares: configuration, telemetry, HTTP bootstrap and errors,
//! database access, authentication, metrics and health.

pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod config;
pub mod created;
pub mod currency;
pub mod db;
pub mod discovery;
pub mod extract;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod list;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod request_id;
pub mod revocation;
pub mod route_pattern;
pub mod search;
pub mod state;
pub mod tally;
pub mod telemetry;

pub use problem::{FieldError, Problem};

/// Installs aws-lc-rs as the process's rustls provider. The dependency tree can compile more than one
/// provider, and rustls then refuses to pick; call this first in every binary and test harness.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
