//! Database access. Every query is timed under a stable `inventory.<name>` for the `db_query_duration`
//! metric, and every stock-changing transaction follows the lock order documented in [`locks`].

pub mod locks;
pub mod products;
pub mod reads;
pub mod returns;
pub mod stock;
pub mod warehouses;

use platform::db::{Db, Isolation};
use sqlx::PgConnection;

use crate::error::InventoryError;

/// The future of one run of a transaction body.
pub type TxFuture<'c, T> = platform::db::TxFuture<'c, T, InventoryError>;

/// A transaction body: it gets its own handle of the database and of `context` on every run (the whole body
/// reruns after a serialization failure or deadlock) and borrows only the connection.
pub type TxBody<C, T> = for<'c> fn(Db, C, &'c mut PgConnection) -> TxFuture<'c, T>;

/// Runs `body` in a read-committed transaction through `Db::transaction`, which reruns it on serialization
/// failures and deadlocks.
///
/// Why the owned context and the boxed future: handlers must be `Send` futures, and rustc cannot yet prove
/// that for an `async` closure that borrows from its caller; a body that owns its inputs and returns a
/// boxed `Send` future it can.
pub async fn transaction<C, T>(db: &Db, context: C, body: TxBody<C, T>) -> Result<T, InventoryError>
where
    C: Clone + Send + Sync + 'static,
    T: Send,
{
    let owned = db.clone();
    db.transaction(
        Isolation::ReadCommitted,
        platform::db::tx_body(move |conn| body(owned.clone(), context.clone(), conn)),
    )
    .await
}
