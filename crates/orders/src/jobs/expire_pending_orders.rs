//! Expires pending orders that inventory neither confirmed nor rejected in time, and prunes spent
//! idempotency keys. Several instances share the work (`FOR UPDATE SKIP LOCKED`).

use messaging::Messaging;
use platform::db::{Db, Isolation, tx_body};
use skeleton::Handles;

use crate::error::OrdersError;
use crate::events::Recorder;
use crate::metrics::{OrderMetrics, Tally};
use crate::ordering;
use crate::repo::orders;

/// Expires up to `batch` lapsed pending orders in one transaction, counting them once it committed;
/// returns how many.
pub async fn expire_lapsed(
    db: &Db,
    messaging: &Messaging,
    metrics: &OrderMetrics,
    batch: u32,
) -> Result<usize, OrdersError> {
    let (handle, messaging) = (db.clone(), messaging.clone());
    let tally = Tally::default();
    let noted = tally.clone();
    let expired = db
        .transaction(
            Isolation::ReadCommitted,
            tx_body(move |conn| {
                let (db, messaging, tally) = (handle.clone(), messaging.clone(), noted.clone());
                Box::pin(async move {
                    // A rerun after a serialization failure: the earlier run rolled back, so do its notes.
                    tally.restart();
                    let recorder = Recorder::for_request(&messaging, tally);
                    let ids = orders::lock_lapsed(&db, conn, batch).await?;
                    for id in &ids {
                        // Locked by `lock_lapsed` in this transaction already.
                        if let Some(order) = orders::load(&db, conn, *id, false).await? {
                            ordering::expire(&db, conn, &recorder, &order).await?;
                        }
                    }
                    Ok::<_, OrdersError>(ids.len())
                })
            }),
        )
        .await?;
    metrics.count(tally.take());
    Ok(expired)
}

/// One round: expires lapsed pending orders, batch after batch while batches come back full, then prunes
/// spent idempotency keys. Errors are logged and the next round tries again.
pub async fn round(handles: Handles, metrics: OrderMetrics, batch: u32) {
    let Handles { db, messaging, .. } = handles;
    loop {
        match expire_lapsed(&db, &messaging, &metrics, batch).await {
            Ok(expired) if expired as u32 >= batch => continue,
            Ok(expired) => {
                if expired > 0 {
                    tracing::info!(expired, "pending orders expired");
                }
                break;
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "order sweeper pass failed"
                );
                break;
            }
        }
    }
    if let Err(error) = platform::idempotency::prune(&db, i64::from(batch)).await {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "idempotency key pruning failed"
        );
    }
}
