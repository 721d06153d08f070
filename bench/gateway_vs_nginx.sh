#!/usr/bin/env bash
# The gateway against nginx proxy_pass, both with upstream keep-alive in front of the same static JSON
# responder (crates/gateway/examples/static_upstream.rs), measured in one run on one machine:
#   1. requests/s at saturation with wrk (bench/wrk_summary.lua reports each run): gateway ÷ nginx, in
#      ROUNDS rounds that alternate the two (each round nginx then the gateway), reported per round with
#      each proxy's CPU per request and share of its core, and as the median of the rounds' ratios;
#   2. with oha, which holds a fixed rate (wrk cannot): added p50/p99 at half nginx's saturation over
#      the direct run of the same round, in ROUNDS rounds (direct, nginx, gateway), with the gateway's
#      full chain on (JWT on a bearer route, RBAC, a rate limiter with a huge limit, info logs to a file,
#      metrics), and the median round by the gateway's added p99;
#   3. p99 of a rejection while the breaker is open, as the client sees it and inside the gateway (the
#      latency_ms of the gateway's own log line: from the request-id middleware to its response), at
#      that rate and at a light one (LIGHT_RATE, 2000/s), and, for scale, /health on the same gateway.
# Both proxies log every request (nginx's access log, the gateway's info line), buffered in memory.
#
# Pinning (PIN, default on with 2 cores or more): the proxy under test runs on PROXY_CPUS (default the
# first core) with one worker per core there, nginx and the gateway alike; wrk, oha, the upstream and curl
# run on LOAD_CPUS (the other cores). Without it the load side takes turns with the proxy on every core
# and either proxy's rate moves by ±15 % from one round to the next; with it each proxy has the same core
# to itself and the load side has the rest, as with a load generator on its own machine. PIN=0 runs
# everything unpinned, one worker per core.
# wrk rather than oha drives saturation because oha needs about twice wrk's CPU per request: with oha on
# the one load core the load side, not the proxy, set the rate (each proxy used ~80 % of its core).
# The fixed rates use RATE_CONNECTIONS (16) rather than 64: at half saturation ~10 requests are in
# flight, and 64 connections only add oha's own work on the shared load core to every percentile (direct
# p99 1.4 ms with 64, 0.55 ms with 16); the report flags a round where the asked rate was not held.
#
# usage: bench/gateway_vs_nginx.sh
#   DURATION (10s) CONNECTIONS (64, saturation) RATE_CONNECTIONS (16, fixed rates) ROUNDS (3)
#   CARGO_TARGET_DIR (/tmp/gw-bench-target) OHA (oha on PATH or /root/.local/bin/oha) WRK (wrk)
#   NGINX_BIN (nginx) PIN (1 with 2 cores or more, else 0) PROXY_CPUS (0) LOAD_CPUS (1-last);
#   ports 9101-9105 and the gateways' admin ports 9203-9204 must be free.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/gw-bench-target}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-16}
OHA=${OHA:-$(command -v oha || echo /root/.local/bin/oha)}
WRK=${WRK:-wrk}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
UPSTREAM_PORT=9101 NGINX_PORT=9102 GATEWAY_PORT=9103 OPEN_GATEWAY_PORT=9104 DEAD_PORT=9105
SECRET=bench-secret-of-at-least-thirty-two-bytes
WORK=$(mktemp -d)
PIDS=()
CORES=$(nproc --all)
if [ "$CORES" -ge 2 ]; then PIN=${PIN:-1}; else PIN=0; fi
if [ "$PIN" = 1 ]; then
  PROXY_CPUS=${PROXY_CPUS:-0}
  LOAD_CPUS=${LOAD_CPUS:-1-$((CORES - 1))}
  # Command prefixes rather than functions, so that `$!` of a background start is the process itself
  # (taskset execs it) and cleanup's kill reaches it.
  ON_PROXY_CPUS=(taskset -c "$PROXY_CPUS")
  ON_LOAD_CPUS=(taskset -c "$LOAD_CPUS")
  # One worker per core the proxy may use, for both.
  PROXY_WORKERS=$("${ON_PROXY_CPUS[@]}" nproc)
  LOAD_THREADS=$("${ON_LOAD_CPUS[@]}" nproc)
else
  ON_PROXY_CPUS=()
  ON_LOAD_CPUS=()
  PROXY_WORKERS=$CORES
  LOAD_THREADS=$CORES
fi

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() { # url: poll until it answers (any status), at most 10 s
  for _ in $(seq 100); do
    "${ON_LOAD_CPUS[@]}" curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2
  exit 1
}

oha_json() { # extra oha arguments…; prints the JSON summary
  "${ON_LOAD_CPUS[@]}" "$OHA" --no-tui --output-format json -z "$DURATION" -c "$RATE_CONNECTIONS" "$@"
}

field() { # json path-expression (python) on stdin
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

echo "== building (release, $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -q -p logicore && cargo build --release -q -p gateway --example static_upstream)
BIN=$CARGO_TARGET_DIR/release

"${ON_LOAD_CPUS[@]}" "$BIN/examples/static_upstream" "127.0.0.1:$UPSTREAM_PORT" & PIDS+=($!)
UPSTREAM_PID=$!
sed -e "s/__UPSTREAM_PORT__/$UPSTREAM_PORT/" -e "s/__NGINX_PORT__/$NGINX_PORT/" \
  -e "s/__WORKERS__/$PROXY_WORKERS/" "$ROOT/bench/nginx.conf" > "$WORK/nginx.conf"
"${ON_PROXY_CPUS[@]}" "$NGINX_BIN" -c "$WORK/nginx.conf" -p "$WORK" & PIDS+=($!)
NGINX_PID=$!

gateway() { # port upstream-url log-dir: the gateway alone, full chain, info logs to a file; its admin
  # listener (metrics, the detailed /readyz) on port + 100
  # The JSON log goes to stdout, redirected to a file.
  mkdir -p "$3"
  "${ON_PROXY_CPUS[@]}" env -i PATH="$PATH" HOME="$HOME" LOGICORE_GATEWAY__HTTP_WORKERS="$PROXY_WORKERS" \
    GATEWAY_PORT="$1" LOGICORE_GATEWAY__ADMIN_PORT="$(($1 + 100))" USER_SERVICE_URL="$2" JWT_SECRET="$SECRET" \
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
TOKEN=$(SECRET=$SECRET python3 "$ROOT/bench/token.py")
# Sent on every request to all three (upstream, nginx, gateway), so each proxy receives and forwards the
# same bytes and the upstream parses the same request; only the gateway checks it.
AUTH="authorization: Bearer $TOKEN"
PATH_UNDER_TEST=/api/v1/users/me
status=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST")
[ "$status" = 200 ] || { echo "the gateway answered $status to the bearer route" >&2; exit 1; }

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$PIN" = 1 ]; then
  echo "== pinned: proxies on CPUs $PROXY_CPUS ($PROXY_WORKERS workers each), wrk, oha and the upstream on CPUs $LOAD_CPUS"
else
  echo "== not pinned: everything shares the $CORES cores, $PROXY_WORKERS workers per proxy"
fi
echo "== saturation ($CONNECTIONS connections, $DURATION, $ROUNDS rounds)"
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
# A saturation run with wrk against `pid` (the process whose CPU is counted; the upstream for the direct
# run): label pid wrk-arguments… Writes wrk's report to label.txt and, to label.result, requests/s, µs of
# CPU per request of `pid`, and the share of one core it used (near 100 % when pinned: the proxy, not the
# load side, sets the rate). Any answer but a 2xx or any socket error fails the run.
measure() {
  local label=$1 pid=$2; shift 2
  local before after
  before=$(ticks "$pid")
  "${ON_LOAD_CPUS[@]}" "$WRK" -t "$LOAD_THREADS" -c "$CONNECTIONS" -d "$DURATION" \
    -s "$ROOT/bench/wrk_summary.lua" "$@" > "$WORK/$label.txt"
  after=$(ticks "$pid")
  python3 - "$WORK/$label.txt" "$label" "$((after - before))" "$(getconf CLK_TCK)" > "$WORK/$label.result" <<'PY'
import json, sys
path, label, ticks, per_second = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.loads([line for line in open(path) if line.startswith("{")][-1])
if d["non_2xx"] or d["socket_errors"] or not d["requests"]:
    sys.exit(f"{label}: {d['requests']} requests, {d['non_2xx']} not 2xx, {d['socket_errors']} socket errors")
seconds, cpu = d["duration_us"] / 1e6, ticks / per_second
print(d["requests"] / seconds, cpu * 1e6 / d["requests"], 100 * cpu / seconds)
PY
}
measure sat-direct "$UPSTREAM_PID" -H "$AUTH" "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST"
read -r DIRECT_RPS _ < "$WORK/sat-direct.result"
ROUND_LINES=""
for round in $(seq "$ROUNDS"); do
  measure "sat-nginx-$round" "$NGINX_PID" -H "$AUTH" "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST"
  measure "sat-gateway-$round" "$GATEWAY_PID" -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST"
  read -r nginx_rps nginx_cpu nginx_core < "$WORK/sat-nginx-$round.result"
  read -r gateway_rps gateway_cpu gateway_core < "$WORK/sat-gateway-$round.result"
  ROUND_LINES+="$nginx_rps $gateway_rps $nginx_cpu $nginx_core $gateway_cpu $gateway_core"$'\n'
done
# The median round by ratio gives the rates reported and the fixed rate below.
read -r NGINX_RPS GATEWAY_RPS < <(printf '%s' "$ROUND_LINES" | python3 -c "
import sys
rounds = sorted((float(g) / float(n), n, g) for n, g, *_ in (line.split() for line in sys.stdin if line.strip()))
_, n, g = rounds[len(rounds) // 2]
print(n, g)")
RATE=$(python3 -c "print(max(1, int($NGINX_RPS / 2)))")

echo "== fixed rate $RATE req/s (half nginx's saturation)"
for round in $(seq "$ROUNDS"); do
  oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$UPSTREAM_PORT$PATH_UNDER_TEST" > "$WORK/rate-direct-$round.json"
  oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$NGINX_PORT$PATH_UNDER_TEST" > "$WORK/rate-nginx-$round.json"
  oha_json -q "$RATE" -H "$AUTH" "http://127.0.0.1:$GATEWAY_PORT$PATH_UNDER_TEST" > "$WORK/rate-gateway-$round.json"
done

echo "== open breaker"
for _ in $(seq 30); do
  "${ON_LOAD_CPUS[@]}" curl -s -o /dev/null -H "$AUTH" "http://127.0.0.1:$OPEN_GATEWAY_PORT$PATH_UNDER_TEST"
done
state=$(curl -s "http://127.0.0.1:$((OPEN_GATEWAY_PORT + 100))/readyz" | field 'd["checks"]["users"]["circuit_breaker"]["state"]')
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
python3 -c "print(f'saturation req/s, upstream direct: {$DIRECT_RPS:.0f}')"
printf '%s' "$ROUND_LINES" | python3 -c "
import sys
for i, line in enumerate(l for l in sys.stdin if l.strip()):
    n, g, cpu_n, core_n, cpu_g, core_g = map(float, line.split())
    print(f'round {i + 1}: nginx {n:.0f}, gateway {g:.0f}, gateway / nginx = {g / n:.3f}; '
          f'CPU per request: nginx {cpu_n:.1f} us, gateway {cpu_g:.1f} us; '
          f'cores used: nginx {core_n:.0f} %, gateway {core_g:.0f} %')"
python3 -c "print(f'median round: nginx {$NGINX_RPS:.0f}, gateway {$GATEWAY_RPS:.0f}, gateway / nginx = {$GATEWAY_RPS / $NGINX_RPS:.3f}')"
for round in $(seq "$ROUNDS"); do
  report "round $round: direct @ $RATE/s" "$WORK/rate-direct-$round.json"
  report "round $round: nginx @ $RATE/s" "$WORK/rate-nginx-$round.json"
  report "round $round: gateway (full chain) @ $RATE/s" "$WORK/rate-gateway-$round.json"
done
# What each proxy adds over the direct run of the same round; the median round by the gateway's added p99.
python3 - "$WORK" "$RATE" "$ROUNDS" <<'PY'
import json, sys
w, rate, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = lambda n: json.load(open(f"{w}/{n}.json"))
added = []
for r in range(1, rounds + 1):
    d, n, g = (data(f"rate-{name}-{r}")["latencyPercentiles"] for name in ("direct", "nginx", "gateway"))
    row = {f"{who} {q}": (x[q] - d[q]) * 1e3 for who, x in (("gateway", g), ("nginx", n)) for q in ("p50", "p99")}
    print(f"round {r} added: " + ", ".join(f"{k} {v:.3f} ms" for k, v in row.items()))
    added.append(row)
    for name in ("nginx", "gateway"):
        served = data(f"rate-{name}-{r}")["summary"]["requestsPerSec"]
        if served < 0.95 * rate:
            print(f"round {r}: {name} served only {served:.0f} of the {rate} req/s asked: its latencies are queueing")
median = sorted(added, key=lambda row: row["gateway p99"])[len(added) // 2]
print("median round added: " + ", ".join(f"{k} {v:.3f} ms" for k, v in median.items()))
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
