//! Property: whatever sequence of adjustments, transfers, reservations, releases and consumptions runs,
//! every stock row's on_hand equals the sum of its ledger rows and its reserved equals what live
//! reservations hold.

use std::time::Duration;

use inventory::domain::{Reason, Sku};
use inventory::metrics::InventoryMetrics;
use inventory::repo::products::{self, ProductKey};
use inventory::repo::stock::{self, Adjustment, Transfer};
use inventory::{Consumption, InventoryError, ReserveRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, ok, spawn_app};

#[derive(Debug, Clone)]
enum Op {
    Adjust {
        warehouse: usize,
        delta: i32,
    },
    Transfer {
        from: usize,
        to: usize,
        quantity: i32,
    },
    Reserve {
        a: i32,
        b: i32,
    },
    Release {
        which: usize,
    },
    Consume {
        which: usize,
        everything: bool,
    },
    Commit {
        which: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, -15..40i32).prop_filter("non-zero", |(_, d)| *d != 0)
            .prop_map(|(warehouse, delta)| Op::Adjust { warehouse, delta }),
        2 => (0..2usize, 0..2usize, 1..20i32).prop_map(|(from, to, quantity)| Op::Transfer { from, to, quantity }),
        3 => (0..12i32, 0..12i32).prop_filter("some line", |(a, b)| a + b > 0)
            .prop_map(|(a, b)| Op::Reserve { a, b }),
        1 => (0..8usize).prop_map(|which| Op::Release { which }),
        2 => (0..8usize, any::<bool>()).prop_map(|(which, everything)| Op::Consume { which, everything }),
        1 => (0..8usize).prop_map(|which| Op::Commit { which }),
    ]
}

/// Business refusals are expected outcomes of a random sequence; anything else is a bug.
fn expected<T>(result: Result<T, InventoryError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(
            InventoryError::InsufficientStock(_)
            | InventoryError::NegativeStock { .. }
            | InventoryError::StockBelowReserved { .. }
            | InventoryError::InvalidTransition { .. }
            | InventoryError::OverConsumption { .. }
            | InventoryError::Validation(_),
        ) => None,
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

async fn run_sequence(app: &TestApp, warehouses: &[Uuid], case: usize, ops: Vec<Op>) {
    let db = &app.db;
    let cache = &app.cache;
    let messaging = &app.messaging;
    // Nothing scrapes these: the sequence checks the ledger, not the metrics.
    let metrics = InventoryMetrics::default();
    let skus = [format!("A-{case}"), format!("B-{case}")];
    for sku in &skus {
        app.product(sku, json!({"reorder_point": 3})).await;
    }
    let product = |sku: &str| {
        let sku = sku.to_owned();
        async move {
            ok(products::lookup(db, cache, ProductKey::Sku(&sku)).await)
                .unwrap_or_else(|| panic!("no {sku}"))
        }
    };
    let mut reservations: Vec<Uuid> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Adjust { warehouse, delta } => {
                let adjustment = Adjustment {
                    product: product(&skus[step % 2]).await,
                    warehouse_id: warehouses[warehouse],
                    delta,
                    reason: if delta > 0 {
                        Reason::Receipt
                    } else {
                        Reason::Damage
                    },
                    note: None,
                    actor: Uuid::now_v7(),
                };
                expected(stock::adjust(db, cache, messaging, &adjustment).await);
            }
            Op::Transfer { from, to, quantity } if from != to => {
                let transfer = Transfer {
                    product: product(&skus[step % 2]).await,
                    from_warehouse_id: warehouses[from],
                    to_warehouse_id: warehouses[to],
                    quantity,
                    actor: Uuid::now_v7(),
                };
                expected(stock::transfer(db, cache, messaging, &transfer).await);
            }
            Op::Transfer { .. } => {}
            Op::Reserve { a, b } => {
                let lines = [(&skus[0], a), (&skus[1], b)]
                    .into_iter()
                    .filter(|(_, q)| *q > 0)
                    .map(|(sku, q)| (ok(Sku::parse(sku, "sku")), q))
                    .collect();
                let request = ReserveRequest {
                    order_id: Uuid::now_v7(),
                    lines,
                    ttl: Duration::from_secs(600),
                    actor: None,
                };
                if let Some((reservation, _)) =
                    expected(inventory::reserve(db, cache, messaging, &metrics, &request).await)
                {
                    reservations.push(reservation.id);
                }
            }
            Op::Release { which } => {
                if let Some(id) = reservations.get(which) {
                    expected(inventory::release_reservation(db, cache, messaging, *id).await);
                }
            }
            Op::Commit { which } => {
                if let Some(id) = reservations.get(which) {
                    expected(inventory::commit_reservation(db, cache, messaging, *id).await);
                }
            }
            Op::Consume { which, everything } => {
                if let Some(id) = reservations.get(which) {
                    let lines = if everything {
                        Vec::new()
                    } else {
                        vec![inventory::ConsumeLine {
                            sku: skus[0].clone(),
                            warehouse_id: None,
                            quantity: 1,
                        }]
                    };
                    let consumption = Consumption {
                        reference: format!("ship-{step}"),
                        lines,
                        actor: None,
                    };
                    expected(inventory::consume_reservation(db, cache, *id, &consumption).await);
                }
            }
        }
    }
    app.assert_ledger_explains_stock().await;
}

#[test]
fn the_ledger_explains_every_stock_level_after_any_sequence_of_operations() {
    let runtime = ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build());
    let (app, warehouses) = runtime.block_on(async {
        let app = spawn_app().await;
        let warehouses = vec![app.warehouse("ONE", 1).await, app.warehouse("TWO", 2).await];
        (app, warehouses)
    });
    // Few cases, each a fresh pair of products on the shared database, so CI stays fast.
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(run_sequence(&app, &warehouses, case, ops));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    runtime.block_on(async move { drop(app) });
}
