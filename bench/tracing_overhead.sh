#!/usr/bin/env bash
# What tracing costs the gateway: requests/s at saturation (wrk, bench/wrk_summary.lua) of three gateways
# in front of the same static upstream (crates/gateway/examples/static_upstream.rs), alike but for tracing:
#   off   no OTLP endpoint (nothing exported, no span made for tracing's sake);
#   1%    exporting to a real OTLP receiver (rotel-agent, gRPC, spans discarded) at sampler ratio 0.01;
#   100%  the same at ratio 1: every request is a server span and a client span, exported.
# Requests carry no traceparent, so the gateway decides (parent-based ratio sampling at the root). ROUNDS
# rounds alternate the three (off, 1 %, 100 %); the report gives each round and the median of each mode's
# ratio to off. After each traced run the script waits for that gateway's export queue to drain, so the
# next run does not share the cores with a backlog of exports. The gateway runs on PROXY_CPUS (the first core) with one worker per core there; wrk, the
# upstream and the receiver on LOAD_CPUS, as in bench/gateway_vs_nginx.sh.
#
# usage: bench/tracing_overhead.sh
#   DURATION (10s) CONNECTIONS (64) ROUNDS (3) CARGO_TARGET_DIR (/tmp/gw-bench-target) WRK (wrk)
#   PROXY_CPUS (0) LOAD_CPUS (1-last); ports 9111-9116 and 9211-9213 must be free; rotel (pip install --pre rotel).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/gw-bench-target}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WRK=${WRK:-wrk}
UPSTREAM_PORT=9111 GRPC_PORT=9112 HTTP_PORT=9113
SECRET=bench-secret-of-at-least-thirty-two-bytes
WORK=$(mktemp -d)
PIDS=()
CORES=$(nproc --all)
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPUS=${LOAD_CPUS:-1-$((CORES - 1))}
ON_PROXY_CPUS=(taskset -c "$PROXY_CPUS")
ON_LOAD_CPUS=(taskset -c "$LOAD_CPUS")
PROXY_WORKERS=$("${ON_PROXY_CPUS[@]}" nproc)
LOAD_THREADS=$("${ON_LOAD_CPUS[@]}" nproc)

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

echo "== building (release, $CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -q -p logicore && cargo build --release -q -p gateway --example static_upstream)
BIN=$CARGO_TARGET_DIR/release
ROTEL=$(python3 -c "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))")

"${ON_LOAD_CPUS[@]}" "$BIN/examples/static_upstream" "127.0.0.1:$UPSTREAM_PORT" & PIDS+=($!)
"${ON_LOAD_CPUS[@]}" "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" \
  --otlp-http-endpoint "127.0.0.1:$HTTP_PORT" --exporter blackhole > "$WORK/rotel.log" 2>&1 & PIDS+=($!)

declare -A PORT GATEWAY_PID
gateway() { # mode port [tracing settings…]: the gateway with info logs to a file, admin on port + 100
  local mode=$1 port=$2; shift 2
  "${ON_PROXY_CPUS[@]}" env -i PATH="$PATH" HOME="$HOME" LOGICORE_GATEWAY__HTTP_WORKERS="$PROXY_WORKERS" \
    GATEWAY_PORT="$port" LOGICORE_GATEWAY__ADMIN_PORT="$((port + 100))" \
    USER_SERVICE_URL="http://127.0.0.1:$UPSTREAM_PORT" JWT_SECRET="$SECRET" LOG_LEVEL=info \
    GATEWAY_RATE_LIMIT_WINDOW_MS=1000 GATEWAY_RATE_LIMIT_MAX_REQUESTS=1000000000 "$@" \
    "$BIN/logicore" gateway > "$WORK/$mode.log" 2>&1 &
  PIDS+=($!)
  PORT[$mode]=$port
  GATEWAY_PID[$mode]=$!
}
OTLP="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$GRPC_PORT"
gateway off 9114
gateway one-percent 9115 "$OTLP" OTEL_TRACES_SAMPLER_ARG=0.01
gateway all 9116 "$OTLP" OTEL_TRACES_SAMPLER_ARG=1
for port in $UPSTREAM_PORT 9114 9115 9116; do wait_for "http://127.0.0.1:$port/health"; done

TOKEN=$(SECRET=$SECRET python3 "$ROOT/bench/token.py")
AUTH="authorization: Bearer $TOKEN"
PATH_UNDER_TEST=/api/v1/users/me

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== gateway on CPUs $PROXY_CPUS ($PROXY_WORKERS workers), wrk, upstream and receiver on CPUs $LOAD_CPUS"
echo "== saturation ($CONNECTIONS connections, $DURATION, $ROUNDS rounds)"
# CPU ticks (user + system, all threads) of a process.
ticks() {
  local total=0 task
  for task in /proc/"$1"/task/*; do
    read -r -a stat < "$task/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}
run() { # mode: "requests/s µs-of-gateway-CPU-per-request" of one wrk run; any answer but a 2xx or a
  # socket error fails the run
  local before after
  before=$(ticks "${GATEWAY_PID[$1]}")
  "${ON_LOAD_CPUS[@]}" "$WRK" -t "$LOAD_THREADS" -c "$CONNECTIONS" -d "$DURATION" \
    -s "$ROOT/bench/wrk_summary.lua" -H "$AUTH" "http://127.0.0.1:${PORT[$1]}$PATH_UNDER_TEST" > "$WORK/$1.txt"
  after=$(ticks "${GATEWAY_PID[$1]}")
  python3 - "$WORK/$1.txt" "$1" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.loads([line for line in open(sys.argv[1]) if line.startswith("{")][-1])
if d["non_2xx"] or d["socket_errors"] or not d["requests"]:
    sys.exit(f"{sys.argv[2]}: {d['requests']} requests, {d['non_2xx']} not 2xx, {d['socket_errors']} socket errors")
print(d["requests"] / (d["duration_us"] / 1e6), int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / d["requests"])
PY
}
exported() { # mode: spans the gateway has exported so far
  curl -s "http://127.0.0.1:$((PORT[$1] + 100))/metrics" |
    awk '/^trace_spans_exported_total/ { print $2 }' | head -n1
}
settled() { # mode: waits (at most 20 s) until the gateway's export queue has drained, so its export thread
  # and the receiver are idle before the next run measures another gateway
  local before after
  for _ in $(seq 40); do
    before=$(exported "$1"); sleep 0.5; after=$(exported "$1")
    [ "$before" = "$after" ] && return 0
  done
}
LINES=""
for round in $(seq "$ROUNDS"); do
  read -r off off_cpu < <(run off)
  read -r one one_cpu < <(run one-percent); settled one-percent
  read -r all all_cpu < <(run all); settled all
  LINES+="$off $one $all $off_cpu $one_cpu $all_cpu"$'\n'
  printf 'round %s: off %.0f/s (%.1f µs CPU/request), 1%% %.0f/s (%.1f µs), 100%% %.0f/s (%.1f µs)\n' \
    "$round" "$off" "$off_cpu" "$one" "$one_cpu" "$all" "$all_cpu"
done
printf '%s' "$LINES" | python3 -c "
import statistics, sys
rows = [[float(x) for x in line.split()] for line in sys.stdin if line.strip()]
med = lambda i: statistics.median(r[i] for r in rows)
ratio = lambda i: statistics.median(r[i] / r[0] for r in rows)
print(f'median requests/s: off {med(0):.0f}, 1 % {med(1):.0f} ({ratio(1):.3f} x off per round), 100 % {med(2):.0f} ({ratio(2):.3f} x off)')
print(f'median gateway CPU per request: off {med(3):.1f} us, 1 % {med(4):.1f} us, 100 % {med(5):.1f} us;'
      f' off/1 % = {med(3) / med(4):.3f}, off/100 % = {med(3) / med(5):.3f} (the throughput ratio a CPU-bound gateway gets)')"
for mode in one-percent all; do
  metrics=$(curl -s "http://127.0.0.1:$((PORT[$mode] + 100))/metrics")
  echo "$mode: $(echo "$metrics" | grep -E '^trace_spans_(exported|dropped)_total' | tr '\n' ' ')"
done
