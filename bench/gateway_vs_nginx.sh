#!/usr/bin/env bash
# The gateway against nginx proxy_pass, both with upstream keep-alive in front of the same static JSON
# responder (crates/gateway/examples/static_upstream.rs), measured in one run on one machine with oha:
#   1. requests/s at saturation: gateway ÷ nginx, in ROUNDS rounds that alternate the two (each round
#      nginx then the gateway), reported per round and as the median of the rounds' ratios;
#   2. added p50/p99 at a fixed rate of half nginx's saturation, with the gateway's full chain on (JWT on
#      a bearer route, RBAC, a rate limiter with a huge limit, info logs to a file, metrics);
#   3. p99 of a rejection while the breaker is open, as the client sees it and inside the gateway (the
#      latency_ms of the gateway's own log line: from the request-id middleware to its response), at
#      that rate and at a light one (LIGHT_RATE, 2000/s), and, for scale, /health on the same gateway.
# Both proxies log every request (nginx's access log, the gateway's info line), buffered in memory.
#
# usage: bench/gateway_vs_nginx.sh
#   DURATION (10s) CONNECTIONS (64) ROUNDS (3) CARGO_TARGET_DIR (/tmp/gw-bench-target) OHA (oha on PATH or
#   /root/.local/bin/oha) NGINX_BIN (nginx); TOKIO_WORKER_THREADS, when set, is passed to the gateway
#   (tokio's default is one worker per core); ports 9101-9105 must be free.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/gw-bench-target}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
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
NGINX_PID=$!

gateway() { # port upstream-url log-dir: the gateway alone, full chain, info logs to a file
  # The JSON log goes to stdout, redirected to a file.
  mkdir -p "$3"
  env -i PATH="$PATH" HOME="$HOME" ${TOKIO_WORKER_THREADS:+TOKIO_WORKER_THREADS=$TOKIO_WORKER_THREADS} \
    GATEWAY_PORT="$1" USER_SERVICE_URL="$2" JWT_SECRET="$SECRET" \
    LOG_LEVEL=info \
    GATEWAY_RATE_LIMIT_WINDOW_MS=1000 GATEWAY_RATE_LIMIT_MAX_REQUESTS=1000000000 \
    GATEWAY_CIRCUIT_BREAKER_RESET_TIMEOUT=3600000 \
    "$BIN/logicore" gateway > "$3/stdout.log" 2>&1 &
  PIDS+=($!)
}
gateway "$GATEWAY_PORT" "http://127.0.0.1:$UPSTREAM_PORT" "$WORK/gateway"
GATEWAY_PID=$!
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

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== saturation ($CONNECTIONS connections, $DURATION, $ROUNDS rounds)"
rps() { field 'd["summary"]["requestsPerSec"]' < "$1"; }
# CPU ticks (user + system, all threads) of a process and its children, e.g. nginx's workers.
ticks() {
  local total=0 pid task
  for pid in "$1" $(pgrep -P "$1" || true); do
    for task in /proc/"$pid"/task/*; do
      read -r -a stat < "$task/stat"
      total=$((total + stat[13] + stat[14]))
    done
  done
  echo "$total"
}
# µs of CPU per request of the process `pid` over a saturation run: label pid oha-arguments…
measure() {
  local label=$1 pid=$2; shift 2
  local before after
  before=$(ticks "$pid")
  oha_json "$@" > "$WORK/$label.json"
  after=$(ticks "$pid")
  python3 -c "import json; d = json.load(open('$WORK/$label.json'))['summary']; print(($after - $before) * 1e4 / (d['requestsPerSec'] * d['total']))" > "$WORK/$label.cpu"
}
oha_json "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST" > "$WORK/sat-direct.json"
DIRECT_RPS=$(rps "$WORK/sat-direct.json")
ROUND_LINES=""
for round in $(seq "$ROUNDS"); do
  measure "sat-nginx-$round" "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST"
  measure "sat-gateway-$round" "$GATEWAY_PID" -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST"
  ROUND_LINES+="$(rps "$WORK/sat-nginx-$round.json") $(rps "$WORK/sat-gateway-$round.json") $(cat "$WORK/sat-nginx-$round.cpu") $(cat "$WORK/sat-gateway-$round.cpu")"$'\n'
done
# The median round by ratio gives the rates reported and the fixed rate below.
read -r NGINX_RPS GATEWAY_RPS < <(printf '%s' "$ROUND_LINES" | python3 -c "
import sys
rounds = sorted((float(g) / float(n), n, g) for n, g, *_ in (line.split() for line in sys.stdin if line.strip()))
_, n, g = rounds[len(rounds) // 2]
print(n, g)")
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
sleep 0.2 # the gateway writes its log every 50 ms: let the warm-up's lines out before counting
OPEN_LOG=$WORK/open-gateway/stdout.log
LOG_LINES_BEFORE=$(wc -l < "$OPEN_LOG")
oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$OPEN_GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/open-rejection.json"
sleep 0.2
tail -n +"$((LOG_LINES_BEFORE + 1))" "$OPEN_LOG" > "$WORK/open-rejection.log"
# The same at a light rate, where the machine has idle CPU: the rejection's own cost rather than the
# wait for a core that oha and the other processes keep busy at the rate above.
LIGHT_RATE=${LIGHT_RATE:-2000}
LOG_LINES_BEFORE=$(wc -l < "$OPEN_LOG")
oha_json -q "$LIGHT_RATE" -H "$AUTH" "http://127.0.0.1:$OPEN_GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/open-rejection-light.json"
sleep 0.2
tail -n +"$((LOG_LINES_BEFORE + 1))" "$OPEN_LOG" > "$WORK/open-rejection-light.log"
oha_json -q "$RATE" "http://127.0.0.1:$OPEN_GATEWAY_PORT/health" > "$WORK/open-health.json"

ms() { python3 -c "print(f'{$1 * 1000:.3f}')"; }
p() { field "d['latencyPercentiles']['$2']" < "$1"; }
codes() { field 'd["statusCodeDistribution"]' < "$1"; }
report() { # label file
  printf '%-34s p50 %8s ms   p99 %8s ms   statuses %s\n' "$1" "$(ms "$(p "$2" p50)")" "$(ms "$(p "$2" p99)")" "$(codes "$2")"
}
echo
echo "saturation req/s, upstream direct: $DIRECT_RPS"
printf '%s' "$ROUND_LINES" | python3 -c "
import sys
for i, line in enumerate(l for l in sys.stdin if l.strip()):
    n, g, cpu_n, cpu_g = map(float, line.split())
    print(f'round {i + 1}: nginx {n:.0f}, gateway {g:.0f}, gateway / nginx = {g / n:.3f}; '
          f'CPU per request: nginx {cpu_n:.1f} us, gateway {cpu_g:.1f} us')"
python3 -c "print(f'median round: nginx {$NGINX_RPS:.0f}, gateway {$GATEWAY_RPS:.0f}, gateway / nginx = {$GATEWAY_RPS / $NGINX_RPS:.3f}')"
report "direct @ $RATE/s" "$WORK/rate-direct.json"
report "nginx @ $RATE/s" "$WORK/rate-nginx.json"
report "gateway (full chain) @ $RATE/s" "$WORK/rate-gateway.json"
python3 - "$WORK" "$RATE" <<'PY'
import json, sys
w, rate = sys.argv[1], int(sys.argv[2])
data = lambda n: json.load(open(f"{w}/{n}.json"))
load = lambda n: data(n)["latencyPercentiles"]
d, n, g = load("rate-direct"), load("rate-nginx"), load("rate-gateway")
for q in ("p50", "p99"):
    print(f"added {q}: gateway {(g[q] - d[q]) * 1e3:.3f} ms, nginx {(n[q] - d[q]) * 1e3:.3f} ms")
for name in ("nginx", "gateway"):
    served = data(f"rate-{name}")["summary"]["requestsPerSec"]
    if served < 0.95 * rate:
        print(f"{name} served only {served:.0f} of the {rate} req/s asked: its latencies are queueing")
PY
inside() { # label log: p50/p99 of the 503s' latency_ms in the gateway's own log lines
  python3 - "$1" "$2" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
latencies = sorted(
    line["latency_ms"] for line in map(json.loads, open(path))
    if line.get("status") == 503 and "latency_ms" in line
)
if latencies:
    at = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3
    print(f"{label:<34} p50 {at(0.50):8.1f} us   p99 {at(0.99):8.1f} us   ({len(latencies)} logged)")
else:
    print(f"{label}: no rejection was logged")
PY
}
report "open breaker rejection @ $RATE/s" "$WORK/open-rejection.json"
inside "  inside the gateway" "$WORK/open-rejection.log"
report "open breaker rejection @ $LIGHT_RATE/s" "$WORK/open-rejection-light.json"
inside "  inside the gateway" "$WORK/open-rejection-light.log"
report "/health same gateway @ $RATE/s" "$WORK/open-health.json"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw oha output and logs: $WORK"
trap - EXIT
cleanup
