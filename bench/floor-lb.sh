#!/usr/bin/env bash
# floor-lb.sh - runs lb-runtime/examples/floor_proxy.rs (the least a proxy of this shape can
# cost: mio and edge-triggered epoll, no tokio, no timers, no log; NOT the product) in the
# project's place, taking the project's command line and config, so that bench/run.sh can
# measure it beside HAProxy: the floor under the project's CPU per request on this machine.
#
# usage: bench/run.sh --lb bench/floor-lb.sh [run.sh options]
#   (build it first: cargo build --release -p lb-runtime --example floor_proxy)
#   FLOOR_BIN=target/release/examples/floor_tokio bench/run.sh --lb bench/floor-lb.sh ...
#   runs the same floor on tokio (lb-runtime/examples/floor_tokio.rs): what tokio alone costs
# It understands what run.sh passes: `--check --config FILE` (exit 0) and `PORT --config FILE`
# (every listener of FILE, each to its pool's backends in turn; nothing else of the config).
# environment: FLOOR_BIN (default $CARGO_TARGET_DIR/release/examples/floor_proxy, else
#              <repo>/target/release/examples/floor_proxy), FLOOR_BIND=0, FLOOR_WORKERS
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${FLOOR_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/release/examples/floor_proxy}
[ -x "$BIN" ] || { echo "floor-lb.sh: no $BIN (cargo build --release -p lb-runtime --example floor_proxy)" >&2; exit 1; }
CHECK=0 CONFIG=""
while (($#)); do
  case "$1" in
    --check) CHECK=1; shift ;;
    --config) CONFIG=$2; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$CONFIG" ] || { echo "floor-lb.sh: --config FILE is needed" >&2; exit 2; }
mapfile -t ROUTES < <(python3 - "$CONFIG" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for l in c["listeners"]:
    backends = [b["address"] for b in c["pools"][l["pool"]]["backends"]]
    print(l["listen"] + "=" + ",".join(backends))
PY
)
((${#ROUTES[@]})) || { echo "floor-lb.sh: no listeners in $CONFIG" >&2; exit 1; }
((CHECK)) && exit 0
exec "$BIN" "${ROUTES[@]}"
