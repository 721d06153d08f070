#!/usr/bin/env bash
# Gateway throughput with each kind of access token (issue 22): today's ES256 token (the users service's
# key, verified with its public JWKS) against the legacy HS256 token (the shared secret), on the same
# route through the gateway to the inventory service (both verify it), and what one verification costs
# with and without the verified-token cache (crates/platform/benches/token_verify.rs).
# Needs PostgreSQL on 127.0.0.1:5432 and `wrk` (Debian package). Results are printed as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
DB=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/logicore_bench}
OUT=bench/out
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 2; }

[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet -p logicore
echo "### What one verification costs"
cargo bench --quiet -p platform --bench token_verify 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS logicore_bench WITH (FORCE)" postgres

# Development settings accept both kinds (auth.accept_hs256 is on outside production).
DATABASE_URL=$DB LOG_LEVEL=${LOG_LEVEL:-warn} GATEWAY_RATE_LIMIT_MAX_REQUESTS=1000000000 \
  "${CARGO_TARGET_DIR:-target}/release/logicore" all >"$OUT/token_kinds_server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -sf localhost:8080/readyz >/dev/null && break; sleep 0.5; done
curl -sf localhost:8080/readyz >/dev/null

curl -sf localhost:8080/api/v1/auth/register -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-1","full_name":"Bench"}' >/dev/null
ES256=$(curl -sf localhost:8080/api/v1/auth/login -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench-password-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
HS256=$(SECRET=logicore-development-secret-do-not-use-in-production python3 bench/token.py)
URL=http://127.0.0.1:8080/api/v1/inventory/products
for token in "$ES256" "$HS256"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $token" $URL)" = 200 ]
done

run() { # kind token round
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "authorization: Bearer $2" "$URL" >"$OUT/token_$1_$3.txt"
}
wrk -t2 -c"$CONNECTIONS" -d3s -H "authorization: Bearer $ES256" "$URL" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  run es256 "$ES256" "$round"
  run hs256 "$HS256" "$round"
done

echo
echo "### Through the gateway: GET /api/v1/inventory/products, $CONNECTIONS connections, $DURATION × $ROUNDS rounds"
python3 - "$OUT" "$ROUNDS" <<'PY'
import re, sys, os
out, rounds = sys.argv[1], int(sys.argv[2])
print("| token | requests/s per round | p50 ms | p99 ms |")
print("|---|---|---|---|")
for kind in ["es256", "hs256"]:
    rates, p50s, p99s = [], [], []
    for r in range(1, rounds + 1):
        text = open(os.path.join(out, f"token_{kind}_{r}.txt")).read()
        rates.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
        def pct(p):
            v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", text).groups()
            return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
        p50s.append(pct(50)); p99s.append(pct(99))
    print(f"| {kind.upper()} | {', '.join(f'{x:.0f}' for x in rates)} | {min(p50s):.2f}–{max(p50s):.2f} | {min(p99s):.2f}–{max(p99s):.2f} |")
PY
