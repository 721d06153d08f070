#!/usr/bin/env bash
# Cached vs uncached hot reads, side by side: GET /api/v1/users/me and product-by-SKU
# (GET /api/v1/inventory/products?sku=…, which goes through the cached `products::lookup`), each at a fixed
# request rate (latency p50/p99) and at full speed (throughput), against the services directly (VIA=gateway
# measures through the gateway on 8080 instead).
#
# Four runs of the release binary (`logicore all`) on a fresh database each:
#   uncached  caching off (`redis.memory_max_entries = 0` with Redis disabled, `Cache::off`): every read
#             misses at once and nothing is stored, so every request reads PostgreSQL through the same call
#             sites. This is the "no cache" path, selected by configuration alone.
#   redis     Redis on 127.0.0.1:6379 (a key prefix of its own), near cache off: every read asks Redis.
#   redis-near  the same with the near cache in front (the default with Redis on).
#   memory    the in-process backend (the default when Redis is not enabled).
#
# HTTP_WORKERS (default 0: the shared runtime) sets `service.http_workers`, the services' dedicated HTTP workers.
#
# Needs PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379, `oha`, `psql`, `curl`, `python3`.
# Results go to bench/out/cache_<mode>_<read>_<kind>.json (oha JSON); the summary is a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-500}               # requests per second of the latency runs
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
DB_NAME=${BENCH_DB_NAME:-logicore_cache_bench}
DB=postgres://postgres@127.0.0.1:5432/$DB_NAME
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/cache-bench-target}
OHA=${OHA:-$(command -v oha || echo /root/.local/bin/oha)}
OUT=bench/out
MODES=${MODES:-uncached redis redis-near memory}
mkdir -p "$OUT"

ADMIN_EMAIL=bench-admin@example.com
ADMIN_PASSWORD=bench-admin-password-1
if [ "${VIA:-direct}" = gateway ]; then
  USERS=http://127.0.0.1:8080 INVENTORY=http://127.0.0.1:8080
else
  USERS=http://127.0.0.1:4001 INVENTORY=http://127.0.0.1:8000
fi

cargo build --release --quiet -p logicore
BIN=$CARGO_TARGET_DIR/release/logicore

SERVER=
stop() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
  fi
}
trap stop EXIT

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

wait_ready() { # base url
  for _ in $(seq 1 120); do
    curl -sf "$1/readyz" >/dev/null && return 0
    sleep 0.5 # polling a starting process from a shell script
  done
  echo "no answer from $1/readyz; see $OUT/cache_server.log" >&2
  return 1
}

run() { # name, url, extra oha args...
  local name=$1 url=$2
  shift 2
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" "$@" \
    -H "authorization: Bearer $TOKEN" "$url" >"$OUT/$name.json"
}

for mode in $MODES; do
  case $mode in
    uncached) CACHE_ENV=(REDIS_ENABLED=false LOGICORE_REDIS__MEMORY_MAX_ENTRIES=0) ;;
    redis) CACHE_ENV=(REDIS_ENABLED=true REDIS_URL=redis://127.0.0.1:6379/ "REDIS_KEY_PREFIX=lc-bench-$$-"
      LOGICORE_REDIS__NEAR_CACHE_MAX_ENTRIES=0) ;;
    redis-near) CACHE_ENV=(REDIS_ENABLED=true REDIS_URL=redis://127.0.0.1:6379/ "REDIS_KEY_PREFIX=lc-bench-near-$$-") ;;
    memory) CACHE_ENV=(REDIS_ENABLED=false) ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
  esac
  echo "== $mode" >&2
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" postgres
  env DATABASE_URL="$DB" LOG_LEVEL=${LOG_LEVEL:-warn} ADMIN_EMAIL=$ADMIN_EMAIL ADMIN_PASSWORD=$ADMIN_PASSWORD \
    GATEWAY_RATE_LIMIT_MAX_REQUESTS=1000000000 LOGICORE_SERVICE__HTTP_WORKERS="${HTTP_WORKERS:-0}" "${CACHE_ENV[@]}" \
    "$BIN" all >"$OUT/cache_server_$mode.log" 2>&1 &
  SERVER=$!
  wait_ready http://127.0.0.1:4001
  wait_ready http://127.0.0.1:8000
  [ "${VIA:-direct}" = gateway ] && wait_ready http://127.0.0.1:8080
  curl -s http://127.0.0.1:4001/readyz | json_field '["checks"]["cache"]' >&2

  BODY='{"email":"bench@example.com","password":"bench-password-1","full_name":"Bench"}'
  TOKEN=$(curl -sf "$USERS/api/v1/auth/register" -H 'content-type: application/json' -d "$BODY" |
    json_field '["access_token"]')
  ADMIN=$(curl -sf "$USERS/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | json_field '["access_token"]')
  curl -sf "$INVENTORY/api/v1/inventory/products" -H "authorization: Bearer $ADMIN" \
    -H 'content-type: application/json' -d '{"sku":"BENCH-1","name":"Bench product"}' >/dev/null

  ME=$USERS/api/v1/users/me
  SKU=$INVENTORY/api/v1/inventory/products?sku=BENCH-1
  # Warm up (pools, JIT-free but caches and connections) before measuring.
  "$OHA" --no-tui -z 2s -c "$CONNECTIONS" -H "authorization: Bearer $TOKEN" "$ME" >/dev/null
  "$OHA" --no-tui -z 2s -c "$CONNECTIONS" -H "authorization: Bearer $TOKEN" "$SKU" >/dev/null
  run "cache_${mode}_me_rate" "$ME" -q "$RATE" --latency-correction
  run "cache_${mode}_sku_rate" "$SKU" -q "$RATE" --latency-correction
  run "cache_${mode}_me_max" "$ME"
  # The floor at this rate: the same server's /health (no token check, no cache, no database). No cache
  # can answer faster than this, so floor p50 / uncached p50 bounds every cached ratio at the fixed rate.
  run "cache_${mode}_floor_rate" http://127.0.0.1:4001/health -q "$RATE" --latency-correction
  run "cache_${mode}_sku_max" "$SKU"
  curl -s http://127.0.0.1:4001/metrics | grep -E '^cache_(hits|near_hits|misses|errors)_total' >&2 || true
  stop
done

python3 - "$OUT" "$RATE" $MODES <<'PY'
import json, os, sys
out, rate, modes = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
def ms(v): return f"{v * 1000:.3f}"
print(f"| read | mode | p50 ms @{rate}/s | p99 ms @{rate}/s | max requests/s | p50 ms at max | non-2xx |")
print("|---|---|---|---|---|---|---|")
p50, p50_max = {}, {}
for read in ["me", "sku"]:
    for mode in modes:
        fixed, full = load(f"cache_{mode}_{read}_rate"), load(f"cache_{mode}_{read}_max")
        bad = sum(v for d in (fixed, full) for k, v in d["statusCodeDistribution"].items() if not k.startswith("2"))
        p50[(read, mode)] = fixed["latencyPercentiles"]["p50"]
        p50_max[(read, mode)] = full["latencyPercentiles"]["p50"]
        print(f"| {read} | {mode} | {ms(fixed['latencyPercentiles']['p50'])} | {ms(fixed['latencyPercentiles']['p99'])} "
              f"| {full['summary']['requestsPerSec']:.0f} | {ms(full['latencyPercentiles']['p50'])} | {bad} |")
print()
for mode in modes:
    floor = load(f"cache_{mode}_floor_rate")["latencyPercentiles"]["p50"]
    line = f"floor (/health) during the {mode} run: p50 {ms(floor)} ms at {rate}/s"
    if "uncached" in modes:
        line += f", floor / uncached p50 = {floor / p50[('me', 'uncached')]:.2f} (me), {floor / p50[('sku', 'uncached')]:.2f} (sku)"
    print(line)
print()
for read in ["me", "sku"]:
    for mode in modes:
        if mode != "uncached" and ("uncached" in modes):
            print(f"{read}: {mode} p50 / uncached p50 = {p50[(read, mode)] / p50[(read, 'uncached')]:.2f} at {rate}/s, "
                  f"{p50_max[(read, mode)] / p50_max[(read, 'uncached')]:.2f} at saturation (target <= 0.20)")
PY
