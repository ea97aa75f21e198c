#!/usr/bin/env bash
# instructions.sh - user-space instructions per request, the project against HAProxy, counted
# by valgrind's callgrind: a figure that does not move with the machine's noise (wall-clock CPU
# per request moves by 10% between runs on a shared VM; this by 1-2% on conn, up to 10% on
# keepalive, where the requests served per wake-up vary with the rate), for telling
# whether a change to the data path made it cheaper before a run of bench/run.sh says how much
# faster. It counts only user space: the kernel's share (most of a small request's cost) is
# outside it, so it is a guide to the code's own overhead, not to the CPU a request costs.
#
# usage: bench/instructions.sh [--lb PATH] [--seconds N] [--only LIST] [--systems LIST]
#   --lb PATH        the loadbalancer binary (default $CARGO_TARGET_DIR/release/loadbalancer,
#                    else <repo>/target/release/loadbalancer)
#   --seconds N      counted seconds of load per system and workload (default 5; the load runs
#                    under valgrind, about 50 times slower, so a few thousand requests)
#   --only LIST      conn,keepalive (default both): wrk -t1 -c4, with "Connection: close"
#                    (a new client and backend connection per request) or persistent
#   --systems LIST   project,haproxy (default both)
#   --keep-tmp       keep the temporary directory (configs, logs, the callgrind profiles, for
#                    `callgrind_annotate --inclusive=yes FILE`)
# environment: LB_INSTR_PORT_BASE (default 18600: BASE+1 HAProxy, BASE+3 the project,
#              BASE+81 the nginx backend), RUST_LOG (passed to the project; unset = info, its
#              default, one access-log line per connection)
# needs: valgrind (callgrind_control, callgrind_annotate), wrk, nginx, haproxy, curl.
# exit status: 0 done, 1 a server or a count failed, 2 usage error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LB="${CARGO_TARGET_DIR:-$HERE/../target}/release/loadbalancer"
SECONDS_PER=5
ONLY=conn,keepalive
SYSTEMS=project,haproxy
BASE=${LB_INSTR_PORT_BASE:-18600}
KEEP=
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --lb) LB=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --systems) SYSTEMS=$2; shift 2 ;;
    --keep-tmp) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "instructions.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
[[ $SECONDS_PER =~ ^[1-9][0-9]*$ ]] || { echo "instructions.sh: --seconds takes a positive integer" >&2; exit 2; }
for tool in valgrind callgrind_control callgrind_annotate wrk nginx haproxy curl; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found (apt-get install valgrind wrk nginx haproxy curl)" >&2; exit 1; }
done
[ -x "$LB" ] || { echo "instructions.sh: no loadbalancer at $LB (cargo build --release -p lb-runtime)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/lb-instr.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$KEEP" ]; then echo "temporary files kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

mkdir -p "$TMP/be/logs"
cat >"$TMP/be/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/be/nginx.pid;
error_log $TMP/be/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/be; proxy_temp_path $TMP/be; fastcgi_temp_path $TMP/be;
    uwsgi_temp_path $TMP/be; scgi_temp_path $TMP/be;
    server { listen 127.0.0.1:$((BASE + 81)); location = /ok { return 200 "ok"; } }
}
EOF
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
defaults
    mode tcp
    timeout connect 1s
    timeout client 5m
    timeout server 5m
frontend web
    bind 127.0.0.1:$((BASE + 1))
    default_backend web
backend web
    server b 127.0.0.1:$((BASE + 81)) check inter 1s rise 2 fall 2
EOF
cat >"$TMP/config.json" <<EOF
{"listen": "127.0.0.1:$((BASE + 3))",
 "backends": [{"name": "b", "address": "127.0.0.1:$((BASE + 81))"}],
 "health_check": {"type": "tcp", "interval": "1s", "rise": 2, "fall": 2},
 "timeouts": {"connect": "1s", "idle": "5m"}}
EOF
"$LB" --check --config "$TMP/config.json" >/dev/null

nginx -p "$TMP/be" -c "$TMP/be/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)

# count SYSTEM PORT WORKLOAD CMD...: starts CMD under callgrind with counting off, warms it up,
# counts SECONDS_PER seconds of wrk load, stops it and prints instructions per request.
count() {
  local system=$1 port=$2 workload=$3; shift 3
  local out="$TMP/$system-$workload.cg"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
    >"$TMP/$system-$workload.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local up=
  for _ in $(seq 1 100); do
    if curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/ok"; then up=1; break; fi
    sleep 0.3
  done
  [ -n "$up" ] || { echo "instructions.sh: $system did not answer on $port (log: $(tail -3 "$TMP/$system-$workload.log"))" >&2; return 1; }
  local args=(-t1 -c4)
  [ "$workload" = conn ] && args+=(-H "Connection: close")
  wrk "${args[@]}" -d2s "http://127.0.0.1:$port/ok" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1 || { echo "instructions.sh: callgrind_control failed for $system" >&2; return 1; }
  local res
  res=$(wrk "${args[@]}" -d"${SECONDS_PER}s" "http://127.0.0.1:$port/ok")
  callgrind_control -i off "$pid" >/dev/null 2>&1 || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local requests ir
  requests=$(awk '/requests in/{print $1}' <<<"$res")
  ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
  if [ -z "$requests" ] || [ "$requests" -eq 0 ] || [ -z "$ir" ]; then
    echo "instructions.sh: $system $workload: no count (requests '${requests}', instructions '${ir}')" >&2
    return 1
  fi
  printf '%-10s %-10s %9d requests %12d instructions/request\n' "$workload" "$system" "$requests" $((ir / requests))
}

echo "user-space instructions per request (callgrind), $SECONDS_PER s of wrk -t1 -c4 per figure"
echo "project: $LB ($(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo '?')); RUST_LOG=${RUST_LOG:-unset}"
for workload in ${ONLY//,/ }; do
  case "$workload" in conn|keepalive) ;; *) echo "instructions.sh: unknown workload $workload" >&2; exit 2 ;; esac
  for system in ${SYSTEMS//,/ }; do
    case "$system" in
      project) count project $((BASE + 3)) "$workload" "$LB" --config "$TMP/config.json" ;;
      haproxy) count haproxy $((BASE + 1)) "$workload" haproxy -f "$TMP/haproxy.cfg" ;;
      *) echo "instructions.sh: unknown system $system" >&2; exit 2 ;;
    esac
  done
done
