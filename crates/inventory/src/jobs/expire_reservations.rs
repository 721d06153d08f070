//! The background task that expires lapsed holds. Availability already ignores them the moment they lapse;
//! the sweeper makes it official (status `expired`, stock given back, `inventory.released` recorded) so
//! the rows stay small and true and the orders service learns about it.

use skeleton::Handles;

use crate::reservations::settle;

/// One round: expires up to `batch` lapsed holds. Errors are logged and the next round tries again: a database
/// blip must not stop expiry for good.
pub async fn round(handles: Handles, batch: u32) {
    let Handles {
        db,
        messaging,
        cache,
    } = handles;
    match settle::sweep_expired(&db, &cache, &messaging, batch).await {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "expired lapsed reservations"),
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "sweeping expired reservations failed"
        ),
    }
}
