#!/usr/bin/env bash
# `get_or_set` hit throughput (memory and Redis backends) next to `redis-benchmark -t get` on the same
# machine, with the same concurrency and value size. Needs Redis on 127.0.0.1:6379 (or BENCH_REDIS_URL
# plus REDIS_HOST/REDIS_PORT for redis-benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."

export BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-32}
export BENCH_SECONDS=${BENCH_SECONDS:-3}
export BENCH_VALUE_BYTES=${BENCH_VALUE_BYTES:-100}
HOST=${REDIS_HOST:-127.0.0.1}
PORT=${REDIS_PORT:-6379}
export BENCH_REDIS_URL=${BENCH_REDIS_URL:-redis://$HOST:$PORT/}

echo "== cache crate (get_or_set, all hits)"
cargo bench --quiet -p cache --bench get_or_set

echo "== redis-benchmark GET (-c $BENCH_CONCURRENCY, -d $BENCH_VALUE_BYTES, no pipelining)"
redis-benchmark -h "$HOST" -p "$PORT" -t get -n 300000 -c "$BENCH_CONCURRENCY" -d "$BENCH_VALUE_BYTES" -q
echo "== redis-benchmark GET, pipelined 16 (the server's ceiling)"
redis-benchmark -h "$HOST" -p "$PORT" -t get -n 1000000 -c "$BENCH_CONCURRENCY" -d "$BENCH_VALUE_BYTES" -P 16 -q
