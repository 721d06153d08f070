#!/usr/bin/env bash
# How fast the gateway follows instances, per discovery backend, measured by the discovery tests themselves
# (real processes, a real etcd server, a real DNS server) and printed by them:
#   etcd: SIGKILL of a users instance → its removal from the gateway's set (lease TTL 2 s in the test), and a
#         new instance's readiness → its first proxied request;
#   dns:  a changed A record (dnsmasq SIGHUP, TTL 1 s) → the gateway's new set.
# Each is the time until the test's poller (every few ms on the gateway's admin view) saw the change, so it
# slightly overstates the gateway's own delay.
#
# usage: bench/discovery_times.sh   (ROUNDS, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
cargo test -q -p logicore --test discovery --no-run >/dev/null 2>&1
cargo test -q -p gateway --test api --no-run >/dev/null 2>&1
for round in $(seq "$ROUNDS"); do
  cargo test -q -p logicore --test discovery etcd -- --nocapture 2>&1 | grep '^etcd discovery' | sed "s/^/round $round: /"
  cargo test -q -p gateway --test api discovery -- --nocapture 2>&1 | grep '^dns discovery' | sed "s/^/round $round: /"
done
