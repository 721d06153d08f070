//! The background task that expires lapsed holds. Availability already ignores them the moment they lapse;
//! the sweeper makes it official (status `expired`, stock given back, `inventory.released` recorded) so
//! the rows stay small and true and the orders service learns about it.

use std::time::Duration;

use cache::Cache;
use messaging::Messaging;
use platform::db::Db;
use tokio_util::sync::CancellationToken;

use crate::reservations::settle;

/// Sweeps every `interval` until `shutdown` fires. Errors are logged and the next round tries again: a
/// database blip must not stop expiry for good.
pub async fn run(
    db: Db,
    cache: Cache,
    messaging: Messaging,
    interval: Duration,
    batch: u32,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match settle::sweep_expired(&db, &cache, &messaging, batch).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired lapsed reservations"),
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "sweeping expired reservations failed"
            ),
        }
    }
    tracing::debug!("reservation sweeper stopped");
}
