#!/usr/bin/env bash
# Measures GET /api/v1/users/me directly on the users service and through the gateway at a fixed request
# rate (latency added by the gateway), and login throughput. Needs PostgreSQL on 127.0.0.1:5432 and `oha`
# (`cargo install oha`). Results go to bench/out/ as oha JSON; the summary is printed as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-1000}          # requests per second for the latency runs
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-16}
DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/logicore_bench}
OUT=bench/out
OHA=${OHA:-oha}
mkdir -p "$OUT"

[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet -p logicore
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS logicore_bench WITH (FORCE)" postgres

DATABASE_URL=$DB LOG_LEVEL=${LOG_LEVEL:-info} GATEWAY_RATE_LIMIT_MAX_REQUESTS=${GATEWAY_RATE_LIMIT_MAX_REQUESTS:-1000000000} "${CARGO_TARGET_DIR:-target}/release/logicore" all >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf localhost:8080/readyz >/dev/null && break; sleep 0.5; done
curl -sf localhost:8080/readyz >/dev/null

BODY='{"email":"bench@example.com","password":"bench-password-1","full_name":"Bench"}'
curl -sf localhost:8080/api/v1/auth/register -H 'content-type: application/json' -d "$BODY" >/dev/null
TOKEN=$(curl -sf localhost:8080/api/v1/auth/login -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run() { # name, url, extra oha args...
  local name=$1 url=$2; shift 2
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" "$@" "$url" >"$OUT/$name.json"
}

# Warm up both paths (connection pools, caches) before measuring.
"$OHA" --no-tui -z 3s -c "$CONNECTIONS" -H "authorization: Bearer $TOKEN" http://127.0.0.1:8080/api/v1/users/me >/dev/null
run me_direct  "http://127.0.0.1:4001/api/v1/users/me" -q "$RATE" --latency-correction -H "authorization: Bearer $TOKEN"
run me_gateway "http://127.0.0.1:8080/api/v1/users/me" -q "$RATE" --latency-correction -H "authorization: Bearer $TOKEN"
run me_direct_max  "http://127.0.0.1:4001/api/v1/users/me" -H "authorization: Bearer $TOKEN"
run me_gateway_max "http://127.0.0.1:8080/api/v1/users/me" -H "authorization: Bearer $TOKEN"
run login_gateway "http://127.0.0.1:8080/api/v1/auth/login" -m POST -T application/json \
  -d '{"email":"bench@example.com","password":"bench-password-1"}'

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def load(name):
    with open(os.path.join(out, name + ".json")) as f:
        return json.load(f)
def ms(v): return f"{v*1000:.3f}"
print("| run | requests/s | p50 ms | p99 ms | status codes |")
print("|---|---|---|---|---|")
rows = {}
for name in ["me_direct", "me_gateway", "me_direct_max", "me_gateway_max", "login_gateway"]:
    d = load(name)
    s, p = d["summary"], d["latencyPercentiles"]
    rows[name] = p
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(d["statusCodeDistribution"].items()))
    print(f"| {name} | {s['requestsPerSec']:.0f} | {ms(p['p50'])} | {ms(p['p99'])} | {codes} |")
print()
print(f"gateway added latency at the fixed rate: p50 {ms(rows['me_gateway']['p50']-rows['me_direct']['p50'])} ms, "
      f"p99 {ms(rows['me_gateway']['p99']-rows['me_direct']['p99'])} ms")
PY
