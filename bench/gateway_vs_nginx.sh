#!/usr/bin/env bash
# The gateway against nginx proxy_pass, both with upstream keep-alive in front of the same static JSON
# responder (crates/gateway/examples/static_upstream.rs), measured in one run on one machine with oha:
#   1. requests/s at saturation: gateway ÷ nginx;
#   2. added p50/p99 at a fixed rate of half nginx's saturation, with the gateway's full chain on (JWT on
#      a bearer route, RBAC, a rate limiter with a huge limit, info logs to a file, metrics);
#   3. p99 of a rejection while the breaker is open (and, for scale, /health on the same gateway).
#
# usage: bench/gateway_vs_nginx.sh
#   DURATION (10s) CONNECTIONS (64) CARGO_TARGET_DIR (/tmp/gw-bench-target) OHA (oha on PATH or
#   /root/.local/bin/oha) NGINX_BIN (nginx); ports 9101-9105 must be free.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/gw-bench-target}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
OHA=${OHA:-$(command -v oha || echo /root/.local/bin/oha)}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
UPSTREAM_PORT=9101 NGINX_PORT=9102 GATEWAY_PORT=9103 OPEN_GATEWAY_PORT=9104 DEAD_PORT=9105
SECRET=bench-secret-of-at-least-thirty-two-bytes
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() { # url: poll until it answers (any status), at most 10 s
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2
  exit 1
}

oha_json() { # extra oha arguments…; prints the JSON summary
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNECTIONS" "$@"
}

field() { # json path-expression (python) on stdin
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

echo "== building (release, $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -q -p logicore && cargo build --release -q -p gateway --example static_upstream)
BIN=$CARGO_TARGET_DIR/release

"$BIN/examples/static_upstream" "127.0.0.1:$UPSTREAM_PORT" & PIDS+=($!)
sed -e "s/__UPSTREAM_PORT__/$UPSTREAM_PORT/" -e "s/__NGINX_PORT__/$NGINX_PORT/" \
  "$ROOT/bench/nginx.conf" > "$WORK/nginx.conf"
"$NGINX_BIN" -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)

gateway() { # port upstream-url log-dir: the gateway alone, full chain, info logs to a file
  # The JSON log goes to stdout, redirected to a file. (LOG_DIR, which adds a second file layer, panics
  # in tracing-subscriber on the first request as of this script; see the report.)
  mkdir -p "$3"
  env -i PATH="$PATH" HOME="$HOME" \
    GATEWAY_PORT="$1" USER_SERVICE_URL="$2" JWT_SECRET="$SECRET" \
    LOG_LEVEL=info \
    GATEWAY_RATE_LIMIT_WINDOW_MS=1000 GATEWAY_RATE_LIMIT_MAX_REQUESTS=1000000000 \
    GATEWAY_CIRCUIT_BREAKER_RESET_TIMEOUT=3600000 \
    "$BIN/logicore" gateway > "$3/stdout.log" 2>&1 &
  PIDS+=($!)
}
gateway "$GATEWAY_PORT" "http://127.0.0.1:$UPSTREAM_PORT" "$WORK/gateway"
gateway "$OPEN_GATEWAY_PORT" "http://127.0.0.1:$DEAD_PORT" "$WORK/open-gateway"
for port in $UPSTREAM_PORT $NGINX_PORT $GATEWAY_PORT $OPEN_GATEWAY_PORT; do
  wait_for "http://127.0.0.1:$port/health"
done

# An HS256 access token as the users service issues it (admin, one hour).
TOKEN=$(SECRET=$SECRET python3 - <<'PY'
import base64, hashlib, hmac, json, os, time, uuid
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"sub": str(uuid.uuid4()), "email": "bench@example.com", "role": "admin",
          "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4()), "iss": "logicore"}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
sig = hmac.new(os.environ["SECRET"].encode(), head.encode(), hashlib.sha256).digest()
print(head + "." + b64(sig))
PY
)
AUTH="authorization: Bearer $TOKEN"
PATH_UNDER_TEST=/api/v1/users/me
status=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST")
[ "$status" = 200 ] || { echo "the gateway answered $status to the bearer route" >&2; exit 1; }

echo "== saturation ($CONNECTIONS connections, $DURATION)"
oha_json "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST" > "$WORK/sat-direct.json"
oha_json "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" > "$WORK/sat-nginx.json"
oha_json -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/sat-gateway.json"
rps() { field 'd["summary"]["requestsPerSec"]' < "$1"; }
DIRECT_RPS=$(rps "$WORK/sat-direct.json")
NGINX_RPS=$(rps "$WORK/sat-nginx.json")
GATEWAY_RPS=$(rps "$WORK/sat-gateway.json")
RATE=$(python3 -c "print(max(1, int($NGINX_RPS / 2)))")

echo "== fixed rate $RATE req/s (half nginx's saturation)"
oha_json -q "$RATE" "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST" > "$WORK/rate-direct.json"
oha_json -q "$RATE" "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" > "$WORK/rate-nginx.json"
oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/rate-gateway.json"

echo "== open breaker"
for _ in $(seq 30); do
  curl -s -o /dev/null -H "$AUTH" "http://127.0.0.1:$OPEN_GATEWAY_PORT$PATH_UNDER_TEST"
done
state=$(curl -s "http://127.0.0.1:$OPEN_GATEWAY_PORT/readyz" | field 'd["checks"]["users"]["circuit_breaker"]["state"]')
[ "$state" = open ] || { echo "the breaker is $state, not open" >&2; exit 1; }
oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$OPEN_GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/open-rejection.json"
oha_json -q "$RATE" "http://127.0.0.1:$OPEN_GATEWAY_PORT/health" > "$WORK/open-health.json"

ms() { python3 -c "print(f'{$1 * 1000:.3f}')"; }
p() { field "d['latencyPercentiles']['$2']" < "$1"; }
codes() { field 'd["statusCodeDistribution"]' < "$1"; }
report() { # label file
  printf '%-34s p50 %8s ms   p99 %8s ms   statuses %s\n' "$1" "$(ms "$(p "$2" p50)")" "$(ms "$(p "$2" p99)")" "$(codes "$2")"
}
echo
echo "saturation req/s: upstream direct $DIRECT_RPS, nginx $NGINX_RPS, gateway $GATEWAY_RPS"
python3 -c "print(f'gateway / nginx = {$GATEWAY_RPS / $NGINX_RPS:.3f}')"
report "direct @ $RATE/s" "$WORK/rate-direct.json"
report "nginx @ $RATE/s" "$WORK/rate-nginx.json"
report "gateway (full chain) @ $RATE/s" "$WORK/rate-gateway.json"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
load = lambda n: json.load(open(f"{w}/{n}.json"))["latencyPercentiles"]
d, n, g = load("rate-direct"), load("rate-nginx"), load("rate-gateway")
for q in ("p50", "p99"):
    print(f"added {q}: gateway {(g[q] - d[q]) * 1e3:.3f} ms, nginx {(n[q] - d[q]) * 1e3:.3f} ms")
PY
report "open breaker rejection @ $RATE/s" "$WORK/open-rejection.json"
report "/health same gateway @ $RATE/s" "$WORK/open-health.json"
echo "raw oha output and logs: $WORK"
trap - EXIT
cleanup
