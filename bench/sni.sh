#!/usr/bin/env bash
# sni.sh - what routing TLS by server name (SNI, passthrough: no termination) costs, measured
# side by side on this machine with new TLS connections (a full handshake each):
#   haproxy-sni    HAProxy, mode tcp, inspect-delay + req_ssl_hello_type 1, use_backend on
#                  req.ssl_sni (exact and -m end), default_backend; nbthread 2
#   project-sni    the project's loadbalancer, a listener with `sni` (exact, *.suffix, pool)
#   project-plain  the project's loadbalancer, a plain listener (`pool` only): the baseline
#   haproxy-plain  HAProxy, mode tcp, no inspection, one backend
#   direct         the client talks to the default backend itself (no proxy)
# Backends: one nginx (2 workers) terminating TLS on three ports (a, b, default), each with
# its own self-signed EC P-256 certificate, answering GET /ok with "ok" and X-Backend: PORT.
#
# usage: bench/sni.sh [--lb PATH] [--rounds R] [--seconds N] [--workers W] [--warmup N]
#                     [--systems LIST] [--out FILE.json] [--keep-tmp] [--no-install]
#
#   --lb PATH        the loadbalancer binary (default: $CARGO_TARGET_DIR/release/loadbalancer,
#                    else <repo>/target/release/loadbalancer); started as PATH PORT --config FILE
#   --rounds R       rounds (default 5); each round measures every system once, in an order
#                    rotated from round to round; the table shows medians and min-max
#   --seconds N      measured seconds per system and round (default 5)
#   --workers W      client processes, each a closed loop of new connections (default 4)
#   --rate N         pace the clients to N new connections per second in all (default 0: closed
#                    loop, as fast as they go); every system then gets the same arrivals
#   --warmup N       unmeasured seconds of load before a system's first round (default 1)
#   --systems LIST   comma-separated list from direct,haproxy-plain,haproxy-sni,project-plain,
#                    project-sni (the default: these five) and haproxy-sni-defer (HAProxy SNI
#                    with `bind ... defer-accept`, TCP_DEFER_ACCEPT; only when asked for)
#   --out FILE.json  also write every figure, per round, as JSON
#   --keep-tmp       keep the temporary directory (configs, certificates, logs, records)
#   --no-install     never call apt-get; fail if a tool is missing
# environment: SNI_BENCH_PORT_BASE (default 18200; ports BASE+1..BASE+5 and BASE+81..BASE+83
#              on 127.0.0.1), HAPROXY, NGINX (binaries, default /usr/sbin/haproxy, /usr/sbin/nginx),
#              BENCHLIB (directory of the team's benchlib.py, found by itself when shared/ is
#              next to the repository), RUST_LOG (passed to the project as is; unset = its
#              default, info, which writes one access-log line per connection)
# exit status: 0 every round worked, 1 a server or a round failed, 2 usage error.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIB="$HERE/sni_bench.py"
DEFAULT_SYSTEMS="direct haproxy-plain haproxy-sni project-plain project-sni"
ALL_SYSTEMS="direct haproxy-plain haproxy-sni haproxy-sni-defer project-plain project-sni"

LB_PATH="" ROUNDS=5 DUR=5 WORKERS_CLI=4 RATE=0 WARMUP=1 ONLY="" OUT="" KEEP=0 INSTALL=1
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
NGINX=${NGINX:-/usr/sbin/nginx}
THREADS=2 # haproxy nbthread, nginx worker_processes

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "sni.sh: error: $*" >&2; exit 1; }
uerr() { echo "sni.sh: $*" >&2; echo "try: bench/sni.sh --help" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while (($#)); do
  case "$1" in
    --lb) (($# >= 2)) || uerr "--lb needs a path"; LB_PATH=$2; shift 2 ;;
    --rounds) (($# >= 2)) || uerr "--rounds needs a number"; ROUNDS=$2; shift 2 ;;
    --seconds) (($# >= 2)) || uerr "--seconds needs a number"; DUR=$2; shift 2 ;;
    --workers) (($# >= 2)) || uerr "--workers needs a number"; WORKERS_CLI=$2; shift 2 ;;
    --warmup) (($# >= 2)) || uerr "--warmup needs a number"; WARMUP=$2; shift 2 ;;
    --rate) (($# >= 2)) || uerr "--rate needs a number"; RATE=$2; shift 2 ;;
    --systems) (($# >= 2)) || uerr "--systems needs a list"; ONLY=$2; shift 2 ;;
    --out) (($# >= 2)) || uerr "--out needs a file"; OUT=$2; shift 2 ;;
    --keep-tmp) KEEP=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) uerr "unknown argument: $1" ;;
  esac
done
is_uint "$ROUNDS" && ((ROUNDS >= 1 && ROUNDS <= 50)) || uerr "--rounds must be an integer in 1..50"
is_uint "$DUR" && ((DUR >= 1 && DUR <= 300)) || uerr "--seconds must be an integer in 1..300"
is_uint "$WORKERS_CLI" && ((WORKERS_CLI >= 1 && WORKERS_CLI <= 64)) || uerr "--workers must be an integer in 1..64"
is_uint "$WARMUP" && ((WARMUP <= 60)) || uerr "--warmup must be an integer in 0..60"
is_uint "$RATE" && ((RATE <= 100000)) || uerr "--rate must be an integer in 0..100000 (0: closed loop)"
SYSTEMS=()
if [[ -z $ONLY ]]; then
  read -r -a SYSTEMS <<<"$DEFAULT_SYSTEMS"
else
  IFS=, read -r -a _s <<<"$ONLY"
  for s in $ALL_SYSTEMS; do # keep the canonical order
    for w in "${_s[@]}"; do [[ $w == "$s" ]] && SYSTEMS+=("$s"); done
  done
  for w in "${_s[@]}"; do [[ " $ALL_SYSTEMS " == *" $w "* ]] || uerr "unknown system '$w' (known: ${ALL_SYSTEMS// /,})"; done
fi
((${#SYSTEMS[@]})) || uerr "--systems selected nothing"
want() { [[ " ${SYSTEMS[*]} " == *" $1 "* ]]; }
if [[ -n $OUT ]]; then
  OUT_DIR=$(dirname -- "$OUT")
  [[ -d $OUT_DIR && -w $OUT_DIR ]] || uerr "--out: directory $OUT_DIR does not exist or is not writable"
  OUT="$(cd "$OUT_DIR" && pwd)/$(basename -- "$OUT")"
fi
NEED_PROJECT=0
{ want project-sni || want project-plain; } && NEED_PROJECT=1
NEED_HAPROXY=0
{ want haproxy-sni || want haproxy-plain || want haproxy-sni-defer; } && NEED_HAPROXY=1

T="" POLICY_MADE=0 STEP_PID=""
declare -A PID=()
ROOT_PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $STEP_PID ]]; then # a round in flight: stop it and its client processes
    pkill -TERM -P "$STEP_PID" 2>/dev/null || true # its client processes, by parent PID
    kill -TERM "$STEP_PID" 2>/dev/null || true
    wait "$STEP_PID" 2>/dev/null || true
  fi
  if ((${#ROOT_PIDS[@]})); then
    python3 "$LIB" stop --grace 5 "${ROOT_PIDS[@]}" 2>/dev/null || kill -KILL "${ROOT_PIDS[@]}" 2>/dev/null || true
    for p in "${ROOT_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  if ((POLICY_MADE)); then rm -f /usr/sbin/policy-rc.d; fi
  if ((KEEP)) && [[ -n $T ]]; then
    echo "temporary files kept in $T" >&2
  elif [[ -n ${T:-} && -d $T ]]; then
    rm -rf -- "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*" >&2; }
NOTES=()

# ------------------------------------------------------------------ the project's binary
if ((NEED_PROJECT)); then
  if [[ -z $LB_PATH ]]; then
    for c in "${CARGO_TARGET_DIR:-}/release/loadbalancer" "$REPO/target/release/loadbalancer"; do
      [[ $c != /release/* && -x $c ]] && { LB_PATH=$c; break; }
    done
  fi
  [[ -n $LB_PATH && -f $LB_PATH && -x $LB_PATH ]] || die "no loadbalancer binary${LB_PATH:+ at $LB_PATH}; build it
  (cargo build --release -p lb-runtime --bin loadbalancer) and/or pass --lb PATH, or leave the project
  out with --systems direct,haproxy-plain,haproxy-sni"
  LB_PATH="$(cd "$(dirname -- "$LB_PATH")" && pwd)/$(basename -- "$LB_PATH")"
fi

# ------------------------------------------------------------------ tools (apt-get if missing)
apt_install() {
  local rc=0
  say "installing with apt-get: $*"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # keep the packages' own services (nginx on :80, haproxy) from being started
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && POLICY_MADE=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 900 apt-get install -y -q --no-install-recommends "$@" >&2 ||
    { timeout 900 apt-get update -q >&2 && timeout 900 apt-get install -y -q --no-install-recommends "$@" >&2; } ||
    rc=$?
  if ((POLICY_MADE)); then rm -f /usr/sbin/policy-rc.d; POLICY_MADE=0; fi
  return $rc
}
missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v openssl >/dev/null || missing+=(openssl)
[[ -x $NGINX ]] || missing+=(nginx)
((NEED_HAPROXY)) && { [[ -x $HAPROXY ]] || missing+=(haproxy); }
if ((${#missing[@]})); then
  ((INSTALL)) || die "missing: ${missing[*]} (--no-install given)"
  [[ $EUID -eq 0 ]] || die "missing: ${missing[*]}; run as root (to apt-get install them) or install them first"
  command -v apt-get >/dev/null || die "missing: ${missing[*]}, and there is no apt-get here"
  apt_install "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
for t in python3 openssl timeout; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -x $NGINX ]] || die "no nginx at $NGINX"
"$NGINX" -V 2>&1 | grep -q -- --with-http_ssl_module || die "nginx at $NGINX has no http_ssl_module"
((NEED_HAPROXY)) && { [[ -x $HAPROXY ]] || die "no haproxy at $HAPROXY"; }
python3 -c 'import ssl' 2>/dev/null || die "python3 has no ssl module"

# ------------------------------------------------------------------ limits, ports, temp dir
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
MAXCONN=$((NOFILE >= 40400 ? 20000 : (NOFILE - 400) / 2))
((MAXCONN >= 100)) || die "open-file limit $NOFILE is too low (ulimit -n)"

PB=${SNI_BENCH_PORT_BASE:-18200}
is_uint "$PB" && ((PB >= 1024 && PB <= 65000)) || die "SNI_BENCH_PORT_BASE must be in 1024..65000"
BE_A=$((PB + 81)) BE_B=$((PB + 82)) BE_D=$((PB + 83))
declare -A PORT=([direct]=$BE_D [haproxy-sni]=$((PB + 1)) [haproxy-plain]=$((PB + 2)) [haproxy-sni-defer]=$((PB + 5))
  [project-sni]=$((PB + 3)) [project-plain]=$((PB + 4)))
WANT_PORTS=("$BE_A" "$BE_B" "$BE_D")
for s in "${SYSTEMS[@]}"; do [[ $s == direct ]] || WANT_PORTS+=("${PORT[$s]}"); done
python3 "$LIB" ports-free "${WANT_PORTS[@]}" || die "fixed ports busy (see above)"

# the server names the clients send, in turn: exact entry, wildcard entry, no entry (default)
NAME_EXACT=a.bench.test NAME_WILD=www.b.bench.test NAME_DEFAULT=other.bench.test
ROUTES_SNI=(--route "$NAME_EXACT=$BE_A" --route "$NAME_WILD=$BE_B" --route "$NAME_DEFAULT=$BE_D")
ROUTES_PLAIN=(--route "$NAME_EXACT=$BE_D" --route "$NAME_WILD=$BE_D" --route "$NAME_DEFAULT=$BE_D")
routes_of() { if [[ $1 == *-sni* ]]; then echo sni; else echo plain; fi; }

read -r BUSY_PCT BUSY_WHO < <(python3 "$LIB" preflight --seconds 1) || BUSY_PCT=0
if [[ ${BUSY_PCT%.*} -ge 10 ]]; then
  NOTES+=("before the run, other processes used ${BUSY_PCT}% of the machine's CPU (${BUSY_WHO:-?}): expect noisy figures")
  say "warning: other processes use ${BUSY_PCT}% of the CPU (${BUSY_WHO:-?}); figures will be noisy"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/lb-sni-bench.XXXXXX")
chmod 755 "$T" # nginx workers run unprivileged and must read the certificates
mkdir -p "$T/logs" "$T/res" "$T/certs" "$T/nginx-be" "$T/haproxy" "$T/project"

start() { # start NAME CMD...: run a server in the background, log to $T/logs/NAME.log
  local name=$1
  shift
  "$@" >"$T/logs/$name.log" 2>&1 </dev/null &
  PID[$name]=$!
  ROOT_PIDS+=("$!")
}
ready() { # ready NAME PORT sni|plain: until every server name reaches its backend through it
  local name=$1 port=$2 kind=$3 routes
  if [[ $kind == sni ]]; then routes=("${ROUTES_SNI[@]}"); else routes=("${ROUTES_PLAIN[@]}"); fi
  python3 "$LIB" wait --name "$name" --port "$port" --pid "${PID[$name]}" --log "$T/logs/$name.log" \
    --timeout 30 "${routes[@]}" || die "$name is not serving on 127.0.0.1:$port (see above)"
}

say "temp dir $T; systems ${SYSTEMS[*]}; $ROUNDS rounds x ${DUR}s, $WORKERS_CLI client processes" \
  "$( ((RATE)) && echo "paced to $RATE conn/s" || echo "(closed loop)");" \
  "about $((${#SYSTEMS[@]} * (ROUNDS * (DUR + 1) + WARMUP) + 15))s"

# ------------------------------------------------------------------ certificates, backends
for cn in a.bench.test '*.b.bench.test' default.bench.test; do
  f=${cn#\*.}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" -days 2 \
    -keyout "$T/certs/$f.key" -out "$T/certs/$f.crt" 2>"$T/logs/openssl.log" ||
    die "openssl req failed: $(cat "$T/logs/openssl.log")"
done
chmod 644 "$T"/certs/*

server_block() { # PORT CERT
  cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl;
        ssl_certificate $T/certs/$2.crt;
        ssl_certificate_key $T/certs/$2.key;
        add_header X-Backend \$server_port always;
        location = /ok { return 200 "ok"; }
        location / { return 404; }
    }
EOF
}
{
  cat <<EOF
# TLS backends: every connection a full handshake (no session cache, no tickets)
worker_processes $THREADS;
worker_rlimit_nofile $NOFILE;
daemon off;
master_process on;
pid $T/nginx-be/nginx.pid;
error_log $T/logs/nginx-be.err error;
events {
    worker_connections $((NOFILE - 100));
}
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 0;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache off;
    ssl_session_tickets off;
    client_body_temp_path $T/nginx-be/client_body;
    proxy_temp_path $T/nginx-be/proxy;
    fastcgi_temp_path $T/nginx-be/fastcgi;
    uwsgi_temp_path $T/nginx-be/uwsgi;
    scgi_temp_path $T/nginx-be/scgi;
EOF
  server_block "$BE_A" a.bench.test
  server_block "$BE_B" b.bench.test
  server_block "$BE_D" default.bench.test
  echo "}"
} >"$T/nginx-be/nginx.conf"
say "starting the TLS backends (nginx on $BE_A a, $BE_B b, $BE_D default)"
start backend "$NGINX" -p "$T/nginx-be" -c "$T/nginx-be/nginx.conf" -e "$T/logs/nginx-be.err"
python3 "$LIB" wait --name backend-a --port "$BE_A" --pid "${PID[backend]}" --log "$T/logs/nginx-be.err" \
  --route "x=$BE_A" --timeout 15 || die "backend not serving"
python3 "$LIB" wait --name backend-b --port "$BE_B" --pid "${PID[backend]}" --log "$T/logs/nginx-be.err" \
  --route "x=$BE_B" --timeout 15 || die "backend not serving"
python3 "$LIB" wait --name backend-default --port "$BE_D" --pid "${PID[backend]}" --log "$T/logs/nginx-be.err" \
  "${ROUTES_PLAIN[@]}" --timeout 15 || die "backend not serving"
PID[direct]=""

# ------------------------------------------------------------------ HAProxy
haproxy_head() {
  cat <<EOF
global
    nbthread $THREADS
    maxconn $MAXCONN

defaults
    mode tcp
    maxconn $MAXCONN
    timeout connect 1s
    timeout client 5m
    timeout server 5m
    timeout check 500ms
    retries 2
    option redispatch
    default-server check inter 1s rise 2 fall 2
EOF
}
haproxy_sni_config() { # PORT BIND_OPTIONS
  haproxy_head
  cat <<EOF

frontend tls
    bind 127.0.0.1:$1$2
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend be_a if { req.ssl_sni -i a.bench.test }
    use_backend be_b if { req.ssl_sni -m end -i .b.bench.test }
    default_backend be_d

backend be_a
    server a 127.0.0.1:$BE_A

backend be_b
    server b 127.0.0.1:$BE_B

backend be_d
    server d 127.0.0.1:$BE_D
EOF
}
for s in haproxy-sni haproxy-sni-defer; do
  want "$s" || continue
  # haproxy-sni-defer (optional): the same with `defer-accept` (TCP_DEFER_ACCEPT: the kernel
  # hands a connection over only once its first bytes, the ClientHello, have arrived)
  opts=""
  [[ $s == haproxy-sni-defer ]] && opts=" defer-accept"
  haproxy_sni_config "${PORT[$s]}" "$opts" >"$T/haproxy/$s.cfg"
  "$HAPROXY" -c -q -f "$T/haproxy/$s.cfg" >"$T/logs/haproxy-check.log" 2>&1 ||
    die "haproxy rejects its config: $(cat "$T/logs/haproxy-check.log")"
  say "starting $s ($("$HAPROXY" -v 2>&1 | head -n1 | awk '{print $3}')) on ${PORT[$s]}"
  start "$s" "$HAPROXY" -db -f "$T/haproxy/$s.cfg"
done
if want haproxy-plain; then
  {
    haproxy_head
    cat <<EOF

frontend tls
    bind 127.0.0.1:${PORT[haproxy-plain]}
    default_backend be_d

backend be_d
    server d 127.0.0.1:$BE_D
EOF
  } >"$T/haproxy/plain.cfg"
  say "starting haproxy-plain on ${PORT[haproxy-plain]}"
  start haproxy-plain "$HAPROXY" -db -f "$T/haproxy/plain.cfg"
fi

# ------------------------------------------------------------------ the project
project_config() { # sni|plain PORT
  local pools
  if [[ $1 == sni ]]; then
    pools="\"a\": { \"backends\": [ { \"address\": \"127.0.0.1:$BE_A\" } ], \"retries\": 2 },
    \"b\": { \"backends\": [ { \"address\": \"127.0.0.1:$BE_B\" } ], \"retries\": 2 },
    \"d\": { \"backends\": [ { \"address\": \"127.0.0.1:$BE_D\" } ], \"retries\": 2 }"
  else
    pools="\"d\": { \"backends\": [ { \"address\": \"127.0.0.1:$BE_D\" } ], \"retries\": 2 }"
  fi
  cat <<EOF
{
  "listeners": [
    { "name": "tls", "listen": "127.0.0.1:$2", "pool": "d", "max_connections": $MAXCONN$(
    [[ $1 == sni ]] && printf ',\n      "sni": { "a.bench.test": "a", "*.b.bench.test": "b" }') }
  ],
  "pools": {
    $pools
  },
  "timeouts": { "connect": "1s", "idle": "5m", "shutdown_grace": "2s" }
}
EOF
}
for s in project-sni project-plain; do
  want "$s" || continue
  kind=${s#project-}
  cfg="$T/project/$kind.json"
  project_config "$kind" "${PORT[$s]}" >"$cfg"
  chk_rc=0
  chk_out=$(cd "$T/project" && timeout 10 "$LB_PATH" --check --config "$cfg" 2>&1) || chk_rc=$?
  if ((chk_rc == 124)); then
    NOTES+=("$s: '--check --config' did not return within 10s; ignored")
  elif ((chk_rc != 0)); then
    die "the project rejects the $kind config, exit $chk_rc: $chk_out
$(cat "$cfg")"
  fi
  say "starting $s ($LB_PATH) on ${PORT[$s]}"
  start "$s" bash -c 'cd "$1" && exec "$2" "$3" --config "$4"' _ "$T/project" "$LB_PATH" "${PORT[$s]}" "$cfg"
done

for s in "${SYSTEMS[@]}"; do
  [[ $s == direct ]] || ready "$s" "${PORT[$s]}" "$(routes_of "$s")"
done

# ------------------------------------------------------------------ rounds
FAILED=0
NSYS=${#SYSTEMS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((i = 0; i < NSYS; i++)); do
    sys=${SYSTEMS[$(((i + r - 1) % NSYS))]} # rotate the order every round
    if [[ $(routes_of "$sys") == sni ]]; then routes=("${ROUTES_SNI[@]}"); else routes=("${ROUTES_PLAIN[@]}"); fi
    args=(--system "$sys" --port "${PORT[$sys]}" --round "$r" --order "$i" --seconds "$DUR"
      --workers "$WORKERS_CLI" --rate "$RATE" --backend-pid "${PID[backend]}" --out "$T/res/$sys.r$r.json" --t0 "$START"
      "${routes[@]}")
    for p in "${ROOT_PIDS[@]}"; do args+=(--server-pid "$p"); done
    [[ $sys == direct ]] || args+=(--proxy-pid "${PID[$sys]}")
    if ((r == 1)); then args+=(--warmup "$WARMUP"); fi
    python3 "$LIB" run "${args[@]}" &
    STEP_PID=$!
    step_rc=0
    wait "$STEP_PID" || step_rc=$?
    STEP_PID=""
    ((step_rc == 0)) || FAILED=1
  done
done

# ------------------------------------------------------------------ report
versions="haproxy $("$HAPROXY" -v 2>/dev/null | head -n1 | awk '{print $3}' || echo '?'); nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'); $(openssl version); python $(python3 -c 'import sys; print(sys.version.split()[0])')"
meta=(--set "started_unix=$START" --set "rounds=$ROUNDS" --set "seconds=$DUR" --set "workers=$WORKERS_CLI" --set "rate=$RATE"
  --set "warmup_s=$WARMUP" --set "port_base=$PB" --set "threads=$THREADS" --set "maxconn=$MAXCONN"
  --set "systems=${SYSTEMS[*]}" --set "versions=$versions"
  --set "names=$NAME_EXACT (exact -> a), $NAME_WILD (*.b.bench.test -> b), $NAME_DEFAULT (no entry -> default)")
if ((NEED_PROJECT)); then
  meta+=(--set "lb_binary=$LB_PATH" --set "lb_sha256=$(sha256sum "$LB_PATH" | cut -c1-16)"
    --set "lb_mtime=$(date -r "$LB_PATH" '+%Y-%m-%d %H:%M:%S')")
fi
if ((NEED_PROJECT)); then
  NOTES+=("project log level: ${RUST_LOG:-info (RUST_LOG unset)}; at info it writes one line per connection to its log file, HAProxy logs nothing here")
fi
for n in "${NOTES[@]}"; do meta+=(--note "$n"); done
report_rc=0
python3 "$LIB" report --dir "$T/res" "${meta[@]}" ${OUT:+--out "$OUT"} || report_rc=$?
((report_rc == 0 && FAILED == 0)) || exit 1
exit 0
