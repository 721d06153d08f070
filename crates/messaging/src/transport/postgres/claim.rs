//! Claiming due deliveries for one subscription, and settling them.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::Inner;
use crate::transport::{Acknowledge, Delivery, TransportError, TxAck};
use platform::backoff::Backoff;

/// Claims due deliveries of one group, at most `prefetch` unsettled at a time (one semaphore permit each,
/// returned when the delivery is settled).
pub(super) struct Claimer {
    pub(super) inner: Arc<Inner>,
    pub(super) group: String,
    pub(super) permits: Arc<Semaphore>,
    /// Rung by settlements in this process so a retry scheduled sooner than the next poll is not missed.
    pub(super) wake: Arc<Notify>,
    pub(super) sender: mpsc::Sender<Delivery>,
}

impl Claimer {
    pub(super) async fn run(self, mut listener: PgListener) {
        let poll = self.inner.options.relay_poll;
        let mut backoff = Backoff::new(
            self.inner.options.reconnect_min,
            self.inner.options.reconnect_max,
        );
        loop {
            let first = tokio::select! {
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = self.sender.closed() => return,
            };
            let mut permits = vec![first];
            while let Ok(permit) = self.permits.clone().try_acquire_owned() {
                permits.push(permit);
            }
            let wanted = permits.len();
            let claimed = self.claim(&mut permits).await;
            if claimed.is_ok() {
                backoff.reset();
            }
            let wait = match claimed {
                Ok(Some(claimed)) if claimed == wanted => continue,
                Ok(Some(_)) => self
                    .next_due()
                    .await
                    .unwrap_or(poll)
                    .clamp(Duration::from_millis(2), poll),
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(group = %self.group, error = %error, "claiming deliveries failed");
                    backoff.next_delay()
                }
            };
            drop(permits);
            tokio::select! {
                () = wait_for_notification(&mut listener) => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = self.sender.closed() => return,
            }
            while listener.next_buffered().is_some() {}
        }
    }

    /// Claims up to `permits.len()` deliveries and hands them on, each with one permit; `None` once the
    /// subscriber is gone.
    async fn claim(
        &self,
        permits: &mut Vec<OwnedSemaphorePermit>,
    ) -> Result<Option<usize>, TransportError> {
        let inner = &self.inner;
        let mut rows: Vec<(i64, i32, String)> = inner
            .db
            .timed(
                "messaging_pg_claim",
                sqlx::query_as(AssertSqlSafe(inner.sql.claim.as_str()))
                    .bind(&self.group)
                    .bind(permits.len() as i64)
                    .bind(inner.options.lease.as_secs_f64())
                    .fetch_all(inner.db.pool()),
            )
            .await?;
        // RETURNING does not keep the subquery's order.
        rows.sort_unstable_by_key(|row| row.0);
        let claimed = rows.len();
        for (id, attempts, body) in rows {
            let Some(permit) = permits.pop() else { break };
            let settle = PgSettle {
                inner: inner.clone(),
                id,
                wake: self.wake.clone(),
                settled: false,
                _permit: permit,
            };
            let delivery = Delivery {
                body: body.into_bytes(),
                attempt: u32::try_from(attempts).unwrap_or(1).max(1),
                settle: Box::new(settle),
            };
            if self.sender.send(delivery).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some(claimed))
    }

    async fn next_due(&self) -> Option<Duration> {
        let seconds: Option<f64> =
            sqlx::query_scalar(AssertSqlSafe(self.inner.sql.next_due.as_str()))
                .bind(&self.group)
                .fetch_one(self.inner.db.pool())
                .await
                .ok()
                .flatten();
        seconds.map(|s| Duration::from_secs_f64(s.max(0.0)))
    }
}

/// Waits for a notification; a broken listener just never wakes (polling covers while it reconnects).
async fn wait_for_notification(listener: &mut PgListener) {
    if listener.recv().await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct PgSettle {
    inner: Arc<Inner>,
    id: i64,
    wake: Arc<Notify>,
    settled: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PgSettle {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Claimed but never settled (the subscriber stopped with it still queued): hand it back now rather
        // than when its lease ends, without counting an attempt that never ran.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (inner, id) = (self.inner.clone(), self.id);
            runtime.spawn(async move {
                let _ = sqlx::query(AssertSqlSafe(inner.sql.release.as_str()))
                    .bind(id)
                    .execute(inner.db.pool())
                    .await;
            });
        }
    }
}

/// Fixes the closure's signature to the higher-ranked one [`TxAck`] needs.
fn tx_ack_fn<F>(f: F) -> F
where
    F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<(), sqlx::Error>>,
{
    f
}

impl Acknowledge for PgSettle {
    fn tx_ack(&self) -> Option<TxAck> {
        let (inner, id) = (self.inner.clone(), self.id);
        Some(Arc::new(tx_ack_fn(move |tx| {
            let inner = inner.clone();
            Box::pin(async move {
                sqlx::query(AssertSqlSafe(inner.sql.ack.as_str()))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })))
    }

    fn acked_in_tx(mut self: Box<Self>) {
        self.settled = true;
    }

    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settled = true;
        Box::pin(async move {
            sqlx::query(AssertSqlSafe(self.inner.sql.ack.as_str()))
                .bind(self.id)
                .execute(self.inner.db.pool())
                .await?;
            Ok(())
        })
    }

    fn retry(
        mut self: Box<Self>,
        delay: Duration,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settled = true;
        Box::pin(async move {
            sqlx::query(AssertSqlSafe(self.inner.sql.retry.as_str()))
                .bind(self.id)
                .bind(delay.as_secs_f64())
                .bind(error)
                .execute(self.inner.db.pool())
                .await?;
            self.wake.notify_one();
            Ok(())
        })
    }

    fn dead_letter(
        mut self: Box<Self>,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        self.settled = true;
        Box::pin(async move {
            sqlx::query(AssertSqlSafe(self.inner.sql.dead.as_str()))
                .bind(self.id)
                .bind(error)
                .execute(self.inner.db.pool())
                .await?;
            Ok(())
        })
    }
}
