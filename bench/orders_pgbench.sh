#!/usr/bin/env bash
# The database's own limit for the order flow: pgbench runs, per order, the statements the services run from
# HTTP create to confirmed (bench/orders_flow.sql) against the real schemas, created by `logicore migrate`. Compare
# its TPS (= orders confirmed per second) with
# `cargo run --release -p logicore --example order_flow_bench`.
#
# Usage: bench/orders_pgbench.sh [CLIENTS] [SECONDS] [SKUS]   (PG* variables select the server;
# LOGICORE, the logicore binary, defaults to $CARGO_TARGET_DIR/release/logicore, else target/release/logicore)
set -euo pipefail
clients=${1:-32}
seconds=${2:-20}
skus=${3:-100}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
logicore=${LOGICORE:-${CARGO_TARGET_DIR:-$root/target}/release/logicore}
db="orders_pgbench_$$"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
createdb "$db"
trap 'dropdb --if-exists "$db"' EXIT
DATABASE_URL="postgres://$PGUSER@$PGHOST:5432/$db" LOG_LEVEL=warn "$logicore" migrate
psql -q -v ON_ERROR_STOP=1 -d "$db" -v skus="$skus" <<'SQL'
INSERT INTO inventory.warehouses (id, code, name) VALUES (gen_random_uuid(), 'MAIN', 'Main');
INSERT INTO inventory.products (id, sku, name) SELECT gen_random_uuid(), 'BENCH-' || i, 'Item ' || i FROM generate_series(0, :skus - 1) i;
INSERT INTO inventory.stock_levels (id, product_id, warehouse_id, on_hand)
  SELECT gen_random_uuid(), p.id, w.id, 100000000 FROM inventory.products p, inventory.warehouses w;
SQL
echo "== $skus SKUs, $clients clients, ${seconds}s"
pgbench -n -M simple -c "$clients" -j 2 -T "$seconds" -D skus="$skus" -f "$here/orders_flow.sql" "$db" |
  grep -E "^(tps|number of failed|latency average|number of transactions actually)"
