//! A year of a mid-sized operator's data, written set-wise (one `INSERT … SELECT generate_series` per table)
//! straight into the services' schemas, then `ANALYZE`d so the planner sees the volume.
//!
//! Ids are UUIDv7 built from each row's creation time (as the services' own ids are), with the table's tag
//! and the row's number in place of the random bits, so a row's id can be recomputed wherever another table
//! refers to it: `pg_temp.id('order', 42, pg_temp.at(42, 100000))` is order 42 everywhere. Everything is
//! written in one transaction, so `now()`, and with it every row's time, is the same in every statement.

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

pub const USERS: i64 = 10_000;
pub const PRODUCTS: i64 = 10_000;
pub const ORDERS: i64 = 100_000;
pub const MOVEMENTS: i64 = 1_000_000;

/// For this session only: no plans of the seeding itself, and no triggers (foreign-key checks of a million
/// rows the statements make consistent by construction, and the ledger's append-only guard).
const SESSION: &str = "\
SET auto_explain.log_min_duration = -1;
SET session_replication_role = replica;
CREATE FUNCTION pg_temp.at(n bigint, total bigint) RETURNS timestamptz LANGUAGE sql STABLE AS
  $$ SELECT now() - interval '365 days' + interval '365 days' * (n::float8 / total) $$;
CREATE FUNCTION pg_temp.week(n bigint, total bigint) RETURNS timestamptz LANGUAGE sql STABLE AS
  $$ SELECT now() - interval '7 days 1 hour' + interval '7 days 1 hour' * (n::float8 / total) $$;
-- Plain hex arithmetic, no hashing: the seeding writes millions of these.
CREATE FUNCTION pg_temp.id(tag text, n bigint, at timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$
  SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || substr(md5(tag), 1, 3)
          || '8' || lpad(to_hex(n), 15, '0'))::uuid $$;
";

/// (table, statement), in an order that keeps references pointing at rows already written.
const TABLES: &[(&str, &str)] = &[
    // One in ten a driver, one in a hundred a manager, the rest customers; one in fifty inactive.
    (
        "users.users",
        "INSERT INTO users.users (id, email, full_name, role, status, password_hash, created_at, updated_at)
         SELECT pg_temp.id('user', u, pg_temp.at(u, 10000)), 'user' || u || '@seed.test', 'Seed User ' || u,
                CASE WHEN u % 10 = 0 THEN 'driver' WHEN u % 100 = 1 THEN 'manager' ELSE 'customer' END,
                CASE WHEN u % 50 = 0 THEN 'inactive' ELSE 'active' END,
                'seeded: no password', pg_temp.at(u, 10000), pg_temp.at(u, 10000)
         FROM generate_series(1, 10000) u",
    ),
    // Five logins' worth of rotated tokens per family.
    (
        "users.refresh_tokens",
        "INSERT INTO users.refresh_tokens (id, family_id, user_id, token_hash, expires_at, spent_at, created_at)
         SELECT pg_temp.id('token', t, pg_temp.at(t, 50000)),
                pg_temp.id('family', t / 5, pg_temp.at(t / 5, 10000)),
                pg_temp.id('user', t / 5 % 10000 + 1, pg_temp.at(t / 5 % 10000 + 1, 10000)),
                sha256(('token' || t)::bytea), now() + interval '30 days',
                CASE WHEN t % 5 <> 4 THEN pg_temp.at(t, 50000) END, pg_temp.at(t, 50000)
         FROM generate_series(0, 49999) t",
    ),
    // Few warehouses (two inactive): the one small table every stock query joins.
    (
        "inventory.warehouses",
        "INSERT INTO inventory.warehouses (id, code, name, priority, active, created_at, updated_at)
         SELECT pg_temp.id('warehouse', w, pg_temp.at(w, 20)), 'WH' || lpad(w::text, 3, '0'), 'Warehouse ' || w,
                w * 10, w <= 18, pg_temp.at(w, 20), pg_temp.at(w, 20)
         FROM generate_series(1, 20) w",
    ),
    (
        "inventory.products",
        "INSERT INTO inventory.products (id, sku, name, weight_grams, reorder_point, created_at, updated_at)
         SELECT pg_temp.id('product', p, pg_temp.at(p, 10000)), 'SKU-' || lpad(p::text, 6, '0'),
                (ARRAY['Bolt', 'Crate', 'Pallet', 'Cable', 'Lamp'])[p % 5 + 1] || ' model ' || p,
                100 + p % 900, 10, pg_temp.at(p, 10000), pg_temp.at(p, 10000)
         FROM generate_series(1, 10000) p",
    ),
    // Each product in five warehouses; one product in fifty below its reorder point.
    (
        "inventory.stock_levels",
        "INSERT INTO inventory.stock_levels (id, product_id, warehouse_id, on_hand, reserved, low_stock,
                                             low_stock_since, updated_at)
         SELECT pg_temp.id('stock', s, pg_temp.at(s, 50000)),
                pg_temp.id('product', p, pg_temp.at(p, 10000)),
                pg_temp.id('warehouse', w, pg_temp.at(w, 20)),
                CASE WHEN p % 50 = 0 THEN 5 ELSE 100 + s % 400 END,
                CASE WHEN p % 50 = 0 THEN 0 ELSE s % 20 END,
                p % 50 = 0, CASE WHEN p % 50 = 0 THEN now() END, pg_temp.at(s, 50000)
         FROM generate_series(0, 49999) s,
              LATERAL (SELECT s / 5 + 1 AS p) x,
              LATERAL (SELECT (x.p + s % 5) % 20 + 1 AS w) y",
    ),
    // Twenty movements per stock row over the year, mostly shipments and receipts, damage rare.
    (
        "inventory.movements",
        "INSERT INTO inventory.movements (id, product_id, warehouse_id, sku, delta, reason, reference, actor,
                                          resulting_on_hand, created_at)
         SELECT pg_temp.id('movement', m, pg_temp.at(m, 1000000)),
                pg_temp.id('product', p, pg_temp.at(p, 10000)),
                pg_temp.id('warehouse', w, pg_temp.at(w, 20)),
                'SKU-' || lpad(p::text, 6, '0'),
                CASE WHEN r IN ('shipment', 'transfer_out', 'damage') THEN -1 ELSE 1 END,
                r, 'seed-' || m, NULL, 100, pg_temp.at(m, 1000000)
         FROM generate_series(1, 1000000) m,
              LATERAL (SELECT m % 50000 AS s) a,
              LATERAL (SELECT a.s / 5 + 1 AS p) b,
              LATERAL (SELECT (b.p + a.s % 5) % 20 + 1 AS w,
                              CASE WHEN m % 100 < 40 THEN 'shipment' WHEN m % 100 < 75 THEN 'receipt'
                                   WHEN m % 100 < 88 THEN 'adjustment' WHEN m % 100 < 93 THEN 'transfer_out'
                                   WHEN m % 100 < 98 THEN 'transfer_in' WHEN m % 100 < 99 THEN 'return'
                                   ELSE 'damage' END AS r) c",
    ),
    // One reservation per order: consumed when it shipped, released when cancelled, held while pending.
    (
        "inventory.reservations",
        "INSERT INTO inventory.reservations (id, order_id, status, expires_at, created_at, updated_at)
         SELECT pg_temp.id('reservation', o, pg_temp.at(o, 100000)), pg_temp.id('order', o, pg_temp.at(o, 100000)),
                CASE WHEN o > 99800 THEN 'held' WHEN o % 100 < 80 THEN 'consumed' WHEN o % 100 < 85 THEN 'released'
                     WHEN o % 100 < 95 THEN 'released' ELSE 'committed' END,
                CASE WHEN o > 99800 THEN now() + interval '15 minutes' ELSE pg_temp.at(o, 100000) + interval '15 minutes' END,
                pg_temp.at(o, 100000), pg_temp.at(o, 100000)
         FROM generate_series(1, 100000) o",
    ),
    (
        "inventory.reservation_lines",
        "INSERT INTO inventory.reservation_lines (id, reservation_id, product_id, warehouse_id, sku, quantity, consumed)
         SELECT pg_temp.id('reservation_line', o * 2 + j, pg_temp.at(o, 100000)),
                pg_temp.id('reservation', o, pg_temp.at(o, 100000)),
                pg_temp.id('product', p, pg_temp.at(p, 10000)),
                pg_temp.id('warehouse', p % 20 + 1, pg_temp.at(p % 20 + 1, 20)),
                'SKU-' || lpad(p::text, 6, '0'), 2, CASE WHEN o % 100 < 80 AND o <= 99800 THEN 2 ELSE 0 END
         FROM generate_series(1, 100000) o, generate_series(0, 1) j,
              LATERAL (SELECT (o * 7 + j) % 10000 + 1 AS p) x",
    ),
    // The outbox and inbox keep a week (the default retention) and then some: the relay prunes what is older.
    (
        "inventory.outbox",
        "INSERT INTO inventory.outbox (id, event_type, aggregate_id, envelope, created_at, sent_at)
         SELECT pg_temp.id('inventory_event', e, pg_temp.week(e, 100000)), 'inventory.reserved', e::text,
                '{}'::json, pg_temp.week(e, 100000), pg_temp.week(e, 100000) + interval '1 second'
         FROM generate_series(1, 100000) e",
    ),
    (
        "inventory.inbox",
        "INSERT INTO inventory.inbox (consumer_group, event_id, processed_at)
         SELECT 'inventory.order-saga', pg_temp.id('orders_event', e, pg_temp.week(e, 100000)), pg_temp.week(e, 100000)
         FROM generate_series(1, 100000) e",
    ),
    // 70% delivered, the rest spread over the other outcomes; only the last few minutes' orders pending.
    (
        "orders.orders",
        "INSERT INTO orders.orders (id, number, customer_id, status, currency, shipping_address, total_amount,
                                    reservation_id, pending_until, created_by, created_at, updated_at)
         SELECT pg_temp.id('order', o, pg_temp.at(o, 100000)), 1000 + o,
                pg_temp.id('user', c, pg_temp.at(c, 10000)),
                CASE WHEN o > 99800 THEN 'pending' WHEN o % 100 < 70 THEN 'delivered' WHEN o % 100 < 80 THEN 'shipped'
                     WHEN o % 100 < 85 THEN 'cancelled' WHEN o % 100 < 90 THEN 'rejected'
                     WHEN o % 100 < 95 THEN 'expired' ELSE 'confirmed' END,
                'EUR',
                '{\"name\": \"Seed Customer\", \"street\": \"1 Seed Street\", \"city\": \"Amsterdam\",
                  \"postal_code\": \"1011 AB\", \"country\": \"NL\"}'::jsonb,
                4000, pg_temp.id('reservation', o, pg_temp.at(o, 100000)),
                CASE WHEN o > 99800 THEN now() + interval '15 minutes' ELSE pg_temp.at(o, 100000) + interval '15 minutes' END,
                pg_temp.id('user', c, pg_temp.at(c, 10000)), pg_temp.at(o, 100000), pg_temp.at(o, 100000)
         FROM generate_series(1, 100000) o, LATERAL (SELECT (o * 7) % 10000 + 1 AS c) x",
    ),
    (
        "orders.order_lines",
        "INSERT INTO orders.order_lines (order_id, line_no, sku, quantity, unit_price)
         SELECT pg_temp.id('order', o, pg_temp.at(o, 100000)), j + 1,
                'SKU-' || lpad(((o * 7 + j) % 10000 + 1)::text, 6, '0'), 2, 1000
         FROM generate_series(1, 100000) o, generate_series(0, 1) j",
    ),
    (
        "orders.order_allocations",
        "INSERT INTO orders.order_allocations (order_id, sku, warehouse_id, quantity)
         SELECT pg_temp.id('order', o, pg_temp.at(o, 100000)), 'SKU-' || lpad(p::text, 6, '0'),
                pg_temp.id('warehouse', p % 20 + 1, pg_temp.at(p % 20 + 1, 20)), 2
         FROM generate_series(1, 100000) o, generate_series(0, 1) j,
              LATERAL (SELECT (o * 7 + j) % 10000 + 1 AS p) x",
    ),
    (
        "orders.order_events",
        "INSERT INTO orders.order_events (id, order_id, kind, from_status, to_status, occurred_at)
         SELECT pg_temp.id('order_event', o * 3 + j, pg_temp.at(o, 100000) + j * interval '1 minute'),
                pg_temp.id('order', o, pg_temp.at(o, 100000)),
                CASE WHEN j = 0 THEN 'created' ELSE 'status_changed' END,
                (ARRAY[NULL, 'pending', 'confirmed'])[j + 1], (ARRAY[NULL, 'confirmed', 'shipped'])[j + 1],
                pg_temp.at(o, 100000) + j * interval '1 minute'
         FROM generate_series(1, 100000) o, generate_series(0, 2) j",
    ),
    // A shipment for every order that shipped; delivered ones with a driver, a proof and three events.
    (
        "orders.shipments",
        "INSERT INTO orders.shipments (id, order_id, warehouse_id, tracking_number, driver_id, status, proof_required,
                                       status_at, created_by, created_at, updated_at)
         SELECT pg_temp.id('shipment', o, pg_temp.at(o, 100000) + interval '1 hour'),
                pg_temp.id('order', o, pg_temp.at(o, 100000)),
                pg_temp.id('warehouse', (o * 7) % 10000 % 20 + 2, pg_temp.at((o * 7) % 10000 % 20 + 2, 20)),
                'LC' || lpad(o::text, 10, '0'),
                pg_temp.id('user', d, pg_temp.at(d, 10000)),
                CASE WHEN o % 100 < 70 THEN 'delivered' ELSE 'in_transit' END, true,
                pg_temp.at(o, 100000) + interval '1 day', pg_temp.id('user', 1, pg_temp.at(1, 10000)),
                pg_temp.at(o, 100000) + interval '1 hour', pg_temp.at(o, 100000) + interval '1 day'
         FROM generate_series(1, 99800) o, LATERAL (SELECT (o % 1000 + 1) * 10 AS d) x
         WHERE o % 100 < 80",
    ),
    (
        "orders.shipment_lines",
        "INSERT INTO orders.shipment_lines (shipment_id, sku, quantity)
         SELECT pg_temp.id('shipment', o, pg_temp.at(o, 100000) + interval '1 hour'),
                'SKU-' || lpad(((o * 7) % 10000 + 1)::text, 6, '0'), 2
         FROM generate_series(1, 99800) o WHERE o % 100 < 80",
    ),
    (
        "orders.tracking_events",
        "INSERT INTO orders.tracking_events (id, shipment_id, status, occurred_at, recorded_at, recorded_by, applied)
         SELECT pg_temp.id('tracking', o * 3 + j, pg_temp.at(o, 100000) + j * interval '8 hours'),
                pg_temp.id('shipment', o, pg_temp.at(o, 100000) + interval '1 hour'),
                (ARRAY['picked_up', 'in_transit', 'delivered'])[j + 1],
                pg_temp.at(o, 100000) + j * interval '8 hours', pg_temp.at(o, 100000) + j * interval '8 hours',
                pg_temp.id('user', (o % 1000 + 1) * 10, pg_temp.at((o % 1000 + 1) * 10, 10000)), true
         FROM generate_series(1, 99800) o, generate_series(0, 2) j WHERE o % 100 < 70",
    ),
    (
        "orders.delivery_proofs",
        "INSERT INTO orders.delivery_proofs (shipment_id, kind, receiver_name, reference, recorded_by, recorded_at)
         SELECT pg_temp.id('shipment', o, pg_temp.at(o, 100000) + interval '1 hour'), 'signature', 'Receiver ' || o,
                'sig-' || o, pg_temp.id('user', (o % 1000 + 1) * 10, pg_temp.at((o % 1000 + 1) * 10, 10000)),
                pg_temp.at(o, 100000) + interval '1 day'
         FROM generate_series(1, 99800) o WHERE o % 100 < 70",
    ),
    // A day's worth of idempotency keys (one per order created in the last day, and then some).
    (
        "orders.idempotency_keys",
        "INSERT INTO orders.idempotency_keys (subject, method, route, key, fingerprint, status_code, body,
                                              created_at, expires_at)
         SELECT pg_temp.id('user', k % 10000 + 1, pg_temp.at(k % 10000 + 1, 10000))::text, 'POST', '/api/v1/orders',
                'key-' || k, md5(k::text), 201, '{}'::jsonb, now() - interval '1 hour',
                now() + interval '23 hours'
         FROM generate_series(1, 20000) k",
    ),
    (
        "orders.outbox",
        "INSERT INTO orders.outbox (id, event_type, aggregate_id, envelope, created_at, sent_at)
         SELECT pg_temp.id('orders_event', e, pg_temp.week(e, 100000)), 'order.created', e::text, '{}'::json,
                pg_temp.week(e, 100000), pg_temp.week(e, 100000) + interval '1 second'
         FROM generate_series(1, 100000) e",
    ),
    (
        "orders.inbox",
        "INSERT INTO orders.inbox (consumer_group, event_id, processed_at)
         SELECT 'orders.saga', pg_temp.id('inventory_event', e, pg_temp.week(e, 100000)), pg_temp.week(e, 100000)
         FROM generate_series(1, 100000) e",
    ),
];

/// Writes every table on `connection`, then vacuums and analyzes them; returns (writing, vacuuming) times.
pub async fn seed(connection: &mut PgConnection) -> (Duration, Duration) {
    connection
        .execute(SESSION)
        .await
        .unwrap_or_else(|e| panic!("seed session: {e}"));
    let started = Instant::now();
    let mut transaction = connection
        .begin()
        .await
        .unwrap_or_else(|e| panic!("seed transaction: {e}"));
    for (table, sql) in TABLES {
        let table_started = Instant::now();
        transaction
            .execute(*sql)
            .await
            .unwrap_or_else(|e| panic!("seeding {table}: {e}"));
        eprintln!("seeded {table} in {:?}", table_started.elapsed());
    }
    transaction
        .commit()
        .await
        .unwrap_or_else(|e| panic!("seed commit: {e}"));
    let written = started.elapsed();
    let started = Instant::now();
    // VACUUM too, as autovacuum would have by now: it summarizes the BRIN ranges of the outbox and fills
    // the visibility maps index-only scans rely on.
    connection
        .execute("VACUUM ANALYZE")
        .await
        .unwrap_or_else(|e| panic!("vacuum analyze: {e}"));
    (written, started.elapsed())
}
