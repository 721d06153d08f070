#!/usr/bin/env bash
# The database's own limit for the reservation workload: pgbench runs the statements of one reservation
# (bench/inventory_reserve.sql) against the inventory schema, on one hot SKU and on 1000 SKUs. Compare its TPS
# with `cargo run --release -p inventory --example reservation_bench`.
#
# Usage: bench/inventory_pgbench.sh [CLIENTS] [SECONDS]   (PG* variables select the server)
set -euo pipefail
clients=${1:-32}
seconds=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
migrations=$here/../crates/inventory/migrations
db="inventory_pgbench_$$"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
createdb "$db"
trap 'dropdb --if-exists "$db"' EXIT
export PGOPTIONS="-c search_path=inventory"
psql -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE SCHEMA inventory"
# One -f per migration, in name (= version) order: psql would take a second bare file name as the user name.
for migration in "$migrations"/*.sql; do
  psql -q -v ON_ERROR_STOP=1 -d "$db" -f "$migration"
done
psql -q -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
INSERT INTO warehouses (id, code, name) VALUES (uuid_generate_v7(), 'MAIN', 'Main');
INSERT INTO products (id, sku, name) SELECT uuid_generate_v7(), 'S-' || i, 'Item ' || i FROM generate_series(0, 999) i;
INSERT INTO stock_levels (id, product_id, warehouse_id, on_hand)
  SELECT uuid_generate_v7(), p.id, w.id, 100000000 FROM products p, warehouses w;
SQL
for skus in 1 1000; do
  echo "== $skus SKU(s), $clients clients, ${seconds}s"
  pgbench -n -M simple -c "$clients" -j 2 -T "$seconds" -D skus="$skus" -f "$here/inventory_reserve.sql" "$db" |
    grep -E "^(tps|number of failed|latency average)"
done
