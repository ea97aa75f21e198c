#!/usr/bin/env bash
# run.sh - the project's load balancer side by side with HAProxy and nginx (stream), in one
# run on this machine, on the workloads of issue 16:
#   conn       wrk, 32 connections, Connection: close (a new client + backend connection per request)
#   keepalive  wrk, 64 persistent connections, GET /ok
#   latency    wrk, 4 persistent connections: p50 / p99, reported round by round
#   bulk       wrk, 4 persistent connections downloading a 16 MiB file
#   iperf      iperf3, one TCP stream through a single-backend listener
#   idle       N idle connections held: resident memory per connection
# (TLS routing by server name is measured by bench/sni.sh, beside this script.)
# Reports medians, ratios to HAProxy, CPU per request / MiB, per-round percentiles, RSS per
# idle connection, the issue's targets and a noise note. See bench/README.md.
#
# usage: bench/run.sh [--lb PATH] [--rounds R] [--seconds N] [--only LIST] [--systems LIST]
#                     [--idle-conns N] [--warmup N] [--out FILE.json] [--keep-tmp]
#                     [--pin-others] [--no-install] [--self-test]
#
#   --lb PATH       the loadbalancer binary (default: $CARGO_TARGET_DIR/release/loadbalancer,
#                   else <repo>/target/release/loadbalancer)
#   --rounds R      rounds (default 5); each round measures every system once per workload,
#                   in an order rotated from round to round
#   --seconds N     measured seconds per system, workload and round (default 3)
#   --only LIST     workloads, comma-separated (default conn,keepalive,latency,bulk,iperf,idle)
#   --systems LIST  from direct,haproxy,nginx,project (default haproxy,nginx,project);
#                   direct = wrk/iperf3 straight to a backend, the machine's limit
#   --idle-conns N  connections the idle workload holds (default 5000)
#   --warmup N      unmeasured seconds of load before a system's first round (default 1)
#   --out FILE      also write every figure, per round, as JSON
#   --keep-tmp      keep the temporary directory (configs, logs, per-round records)
#   --pin-others    bind HAProxy's threads (cpu-map) and nginx's workers (worker_cpu_affinity
#                   auto) to a CPU each, as the project binds its workers by default
#   --no-install    never call apt-get; fail if a tool is missing
#   --self-test     check the tool itself: bench/standin-lb.py (HAProxy under the project's
#                   name) in place of --lb, 1 round x 2 s unless given, 500 idle connections;
#                   exit 0 when every figure was measured without errors and, on a quiet
#                   machine (others < 10%), every stand-in/haproxy ratio is within x1.6 of 1
# environment: LB_BENCH_PORT_BASE (default 18400: ports BASE+1..BASE+13, BASE+81..BASE+90 on
#              127.0.0.1), HAPROXY, NGINX (binaries), RUST_LOG (passed to the project as is)
# exit status: 0 every run worked, 1 a server or a run failed, 2 usage error.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LIB="$HERE/lb_bench.py"
ALL_WL="conn keepalive latency bulk iperf idle"

LB_PATH="" ROUNDS="" DUR="" ONLY="conn,keepalive,latency,bulk,iperf,idle" SYS_LIST="haproxy,nginx,project"
IDLE_CONNS="" WARMUP=1 OUT="" KEEP=0 INSTALL=1 SELFTEST=0 PIN_OTHERS=0
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
NGINX=${NGINX:-/usr/sbin/nginx}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "run.sh: error: $*" >&2; exit 1; }
uerr() { echo "run.sh: $*" >&2; echo "try: bench/run.sh --help" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while (($#)); do
  case "$1" in
    --lb) (($# >= 2)) || uerr "--lb needs a path"; LB_PATH=$2; shift 2 ;;
    --rounds) (($# >= 2)) || uerr "--rounds needs a number"; ROUNDS=$2; shift 2 ;;
    --seconds) (($# >= 2)) || uerr "--seconds needs a number"; DUR=$2; shift 2 ;;
    --only) (($# >= 2)) || uerr "--only needs a list"; ONLY=$2; shift 2 ;;
    --systems) (($# >= 2)) || uerr "--systems needs a list"; SYS_LIST=$2; shift 2 ;;
    --idle-conns) (($# >= 2)) || uerr "--idle-conns needs a number"; IDLE_CONNS=$2; shift 2 ;;
    --warmup) (($# >= 2)) || uerr "--warmup needs a number"; WARMUP=$2; shift 2 ;;
    --out) (($# >= 2)) || uerr "--out needs a file"; OUT=$2; shift 2 ;;
    --keep-tmp) KEEP=1; shift ;;
    --pin-others) PIN_OTHERS=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --self-test) SELFTEST=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) uerr "unknown argument: $1" ;;
  esac
done
if ((SELFTEST)); then
  [[ -z $LB_PATH ]] || uerr "--self-test uses bench/standin-lb.py; do not give --lb"
  LB_PATH="$HERE/standin-lb.py"
  : "${ROUNDS:=1}" "${DUR:=2}" "${IDLE_CONNS:=500}"
  [[ $SYS_LIST == *project* && $SYS_LIST == *haproxy* ]] || uerr "--self-test needs haproxy and project"
fi
: "${ROUNDS:=5}" "${DUR:=3}" "${IDLE_CONNS:=5000}"
is_uint "$ROUNDS" && ((ROUNDS >= 1 && ROUNDS <= 30)) || uerr "--rounds must be an integer in 1..30"
is_uint "$DUR" && ((DUR >= 1 && DUR <= 120)) || uerr "--seconds must be an integer in 1..120"
is_uint "$IDLE_CONNS" && ((IDLE_CONNS >= 1)) || uerr "--idle-conns must be a positive integer"
is_uint "$WARMUP" && ((WARMUP <= 30)) || uerr "--warmup must be an integer in 0..30"
WORKLOADS=() SYSTEMS=()
IFS=, read -r -a _l <<<"$ONLY"
for w in "${_l[@]}"; do
  [[ " $ALL_WL " == *" $w "* ]] || uerr "unknown workload '$w' (known: ${ALL_WL// /,})"
  [[ " ${WORKLOADS[*]-} " == *" $w "* ]] || WORKLOADS+=("$w")
done
IFS=, read -r -a _l <<<"$SYS_LIST"
for s in direct haproxy nginx project; do # canonical order
  for x in "${_l[@]}"; do [[ $x == "$s" ]] && SYSTEMS+=("$s"); done
done
for x in "${_l[@]}"; do [[ " direct haproxy nginx project " == *" $x "* ]] || uerr "unknown system '$x'"; done
((${#WORKLOADS[@]} && ${#SYSTEMS[@]})) || uerr "no workload or no system selected"
has() { [[ " $2 " == *" $1 "* ]]; }
has_wl() { has "$1" "${WORKLOADS[*]}"; }
has_sys() { has "$1" "${SYSTEMS[*]}"; }
if [[ -n $OUT ]]; then
  d=$(dirname -- "$OUT")
  [[ -d $d && -w $d ]] || uerr "--out: $d is not a writable directory"
  OUT="$(cd "$d" && pwd)/$(basename -- "$OUT")"
fi
if has_sys project; then
  if [[ -z $LB_PATH ]]; then
    for c in "${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/release/loadbalancer}" "$REPO/target/release/loadbalancer"; do
      [[ -n $c && -x $c ]] && { LB_PATH=$c; break; }
    done
  fi
  [[ -n $LB_PATH && -x $LB_PATH ]] ||
    die "no loadbalancer binary${LB_PATH:+ at $LB_PATH}: cargo build --release -p lb-runtime --bin loadbalancer, or --lb PATH"
  LB_PATH="$(cd "$(dirname -- "$LB_PATH")" && pwd)/$(basename -- "$LB_PATH")"
fi

T="" POLICY_MADE=0 STEP=""
declare -A PID=()
ROOTS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $STEP ]]; then
    python3 "$LIB" stop --tree --grace 2 "$STEP" 2>/dev/null || kill -KILL "$STEP" 2>/dev/null || true
    wait "$STEP" 2>/dev/null || true
  fi
  if ((${#ROOTS[@]})); then
    python3 "$LIB" stop --grace 5 "${ROOTS[@]}" 2>/dev/null || kill -KILL "${ROOTS[@]}" 2>/dev/null || true
    for p in "${ROOTS[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  ((POLICY_MADE)) && rm -f /usr/sbin/policy-rc.d
  if [[ -n $T && -d $T ]]; then
    if ((KEEP)); then echo "temporary files kept in $T" >&2; else rm -rf -- "$T"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
START=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*" >&2; }
NOTES=()
# The first N CPUs this script may run on, space-separated (for HAProxy's cpu-map).
first_cpus() { python3 -c 'import os, sys; print(" ".join(map(str, sorted(os.sched_getaffinity(0))[:int(sys.argv[1])])))' "$1"; }
if ((PIN_OTHERS)); then
  NOTES+=("--pin-others: HAProxy's threads (cpu-map) and nginx's workers (worker_cpu_affinity auto) bound to a CPU each, like the project's workers")
else
  NOTES+=("the project binds its workers to a CPU each by default (--no-cpu-affinity: not); HAProxy and nginx run unbound, their defaults (--pin-others binds them too)")
fi

# ------------------------------------------------------------------ tools
stream_so() { # the nginx stream module to load ("" when built in); fails when there is none
  local v
  v=$("$NGINX" -V 2>&1) || return 1
  if [[ $v == *--with-stream=dynamic* || $v != *--with-stream* ]]; then
    for f in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
      [[ -f $f ]] && { echo "$f"; return 0; }
    done
    return 1
  fi
  echo ""
}
missing=()
[[ -x $HAPROXY ]] || missing+=(haproxy)
if [[ -x $NGINX ]]; then stream_so >/dev/null || missing+=(libnginx-mod-stream); else missing+=(nginx libnginx-mod-stream); fi
command -v wrk >/dev/null || missing+=(wrk)
command -v iperf3 >/dev/null || missing+=(iperf3)
if ((${#missing[@]})); then
  ((INSTALL)) || die "missing: ${missing[*]} (--no-install)"
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || die "missing: ${missing[*]}; install them (or run as root with apt-get)"
  say "installing: ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the packages' own services from starting
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && POLICY_MADE=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { timeout 900 apt-get update -q >&2 && timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
    die "apt-get install ${missing[*]} failed"
  if ((POLICY_MADE)); then rm -f /usr/sbin/policy-rc.d; POLICY_MADE=0; fi
fi
STREAM_SO=$(stream_so) || die "nginx at $NGINX has no stream module (libnginx-mod-stream)"

# ------------------------------------------------------------------ limits, ports, temp dir
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
MAXCONN=$((NOFILE >= 40400 ? 20000 : (NOFILE - 400) / 2)) # two descriptors per proxied connection
((MAXCONN >= 200)) || die "open-file limit $NOFILE is too low"
if ((IDLE_CONNS > MAXCONN - 100)); then
  NOTES+=("idle: the open-file limit $NOFILE allows $((MAXCONN - 100)) of the $IDLE_CONNS connections asked for")
  IDLE_CONNS=$((MAXCONN - 100))
fi
PB=${LB_BENCH_PORT_BASE:-18400}
is_uint "$PB" && ((PB >= 1024 && PB <= 65000)) || die "LB_BENCH_PORT_BASE must be in 1024..65000"
BE=($((PB + 81)) $((PB + 82)) $((PB + 83)))
IPERF=$((PB + 90))
declare -A PORT=([direct]=${BE[0]} [haproxy]=$((PB + 1)) [nginx]=$((PB + 2)) [project]=$((PB + 3)))
declare -A IPORT=([direct]=$IPERF [haproxy]=$((PB + 11)) [nginx]=$((PB + 12)) [project]=$((PB + 13)))
want=("${BE[@]}" "$IPERF")
for s in "${SYSTEMS[@]}"; do [[ $s == direct ]] || want+=("${PORT[$s]}" "${IPORT[$s]}"); done
python3 "$LIB" ports-free "${want[@]}" || die "ports busy (another run?)"

say "sampling the machine's load for 2 s before starting"
NOISE=$(python3 "$LIB" noise --seconds 2 --root-pid $$) || NOISE=""
say "before the run: $NOISE"

T=$(mktemp -d "${TMPDIR:-/tmp}/lb-run.XXXXXX")
chmod 755 "$T" # nginx workers (unprivileged) read $T/www
mkdir -p "$T/www" "$T/logs" "$T/res" "$T/be" "$T/nginx" "$T/haproxy" "$T/project"
start() { # start NAME CMD...: in the background, output to $T/logs/NAME.log
  local n=$1
  shift
  "$@" >"$T/logs/$n.log" 2>&1 </dev/null &
  PID[$n]=$!
  ROOTS+=("$!")
}
ready() { # ready NAME PORT [options]: wait until it serves, else stop the run
  local n=$1 p=$2
  shift 2
  python3 "$LIB" wait --name "$n" --port "$p" --pid "${PID[$n]}" --log "$T/logs/$n.log" "$@" ||
    die "$n does not serve on 127.0.0.1:$p"
}

est=0
for w in "${WORKLOADS[@]}"; do
  if [[ $w == idle ]]; then est=$((est + ${#SYSTEMS[@]} * (4 + IDLE_CONNS / 1500))); else
    est=$((est + ${#SYSTEMS[@]} * (ROUNDS * (DUR + 1) + WARMUP * 2))); fi
done
say "workloads ${WORKLOADS[*]}; systems ${SYSTEMS[*]}; $ROUNDS round(s) x ${DUR}s; about $((est + 15))s; temp $T"

# ------------------------------------------------------------------ backends: nginx, 2 workers, 3 ports
printf 'ok' >"$T/www/ok"
head -c $((16 << 20)) /dev/urandom >"$T/www/big.bin"
cat >"$T/be/nginx.conf" <<EOF
worker_processes 2;
$( ((PIN_OTHERS)) && echo 'worker_cpu_affinity auto;')
worker_rlimit_nofile $NOFILE;
daemon off;
pid $T/be/nginx.pid;
error_log $T/logs/be.err warn;
events { worker_connections $((NOFILE - 100)); }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $T/be/cb;
    proxy_temp_path $T/be/px;
    fastcgi_temp_path $T/be/fc;
    uwsgi_temp_path $T/be/uw;
    scgi_temp_path $T/be/sc;
    server {
        listen 127.0.0.1:${BE[0]};
        listen 127.0.0.1:${BE[1]};
        listen 127.0.0.1:${BE[2]};
        root $T/www;
        add_header X-Backend \$server_port always;
        location = /ok { return 200 "ok"; }
        location = /big.bin { }
        location / { return 404; }
    }
}
EOF
start backend "$NGINX" -p "$T/be" -c "$T/be/nginx.conf" -e "$T/logs/be.err"
for p in "${BE[@]}"; do ready backend "$p" --backends 1; done
if has_wl iperf; then
  start iperf3 iperf3 -s -B 127.0.0.1 -p "$IPERF"
  ready iperf3 "$IPERF"
fi

# ------------------------------------------------------------------ HAProxy: nbthread 2, mode tcp
if has_sys haproxy; then
  {
    printf 'global\n    nbthread 2\n    maxconn %s\n' "$MAXCONN"
    # Thread 1 on the first CPU this script may use, thread 2 on the second.
    ((PIN_OTHERS)) && printf '    cpu-map auto:1/1-2 %s\n' "$(first_cpus 2)"
    printf '\ndefaults\n    mode tcp\n    maxconn %s\n' "$MAXCONN"
    printf '    timeout connect 1s\n    timeout client 5m\n    timeout server 5m\n    timeout check 500ms\n'
    printf '    retries 2\n    option redispatch\n\n'
    printf 'frontend web\n    bind 127.0.0.1:%s\n    default_backend web\n\n' "${PORT[haproxy]}"
    printf 'backend web\n    balance roundrobin\n    default-server check inter 1s rise 2 fall 2\n'
    for p in "${BE[@]}"; do printf '    server backend-%s 127.0.0.1:%s\n' "$p" "$p"; done
    printf '\nfrontend iperf\n    bind 127.0.0.1:%s\n    default_backend iperf\n\n' "${IPORT[haproxy]}"
    printf 'backend iperf\n    server iperf3 127.0.0.1:%s check inter 1s rise 2 fall 2\n' "$IPERF"
  } >"$T/haproxy/haproxy.cfg"
  start haproxy "$HAPROXY" -db -f "$T/haproxy/haproxy.cfg"
  ready haproxy "${PORT[haproxy]}" --backends 3
fi

# ------------------------------------------------------------------ nginx stream: 2 workers
if has_sys nginx; then
  {
    [[ -z $STREAM_SO ]] || echo "load_module $STREAM_SO;"
    cat <<EOF
worker_processes 2;
$( ((PIN_OTHERS)) && echo 'worker_cpu_affinity auto;')
worker_rlimit_nofile $NOFILE;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/logs/nginx.err warn;
events { worker_connections $((NOFILE - 100)); }
stream {
    upstream web { server 127.0.0.1:${BE[0]}; server 127.0.0.1:${BE[1]}; server 127.0.0.1:${BE[2]}; }
    upstream iperf { server 127.0.0.1:$IPERF; }
    server { listen 127.0.0.1:${PORT[nginx]}; proxy_pass web; proxy_connect_timeout 1s; proxy_timeout 5m; }
    server { listen 127.0.0.1:${IPORT[nginx]}; proxy_pass iperf; proxy_connect_timeout 1s; proxy_timeout 5m; }
}
EOF
  } >"$T/nginx/nginx.conf"
  start nginx "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/logs/nginx.err"
  ready nginx "${PORT[nginx]}" --backends 3
fi

# ------------------------------------------------------------------ the project: one process, two listeners
COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] || COMMIT="$COMMIT+changes"
if has_sys project; then
  python3 "$LIB" lbconfig --port "${PORT[project]}" --iperf-port "${IPORT[project]}" --iperf-backend "$IPERF" \
    --backend "${BE[0]}" --backend "${BE[1]}" --backend "${BE[2]}" --max-connections "$MAXCONN" \
    --out "$T/project/config.json"
  chk=$(cd "$T/project" && timeout 20 "$LB_PATH" --check --config "$T/project/config.json" 2>&1) ||
    die "the project rejects its config: $chk
$(cat "$T/project/config.json")"
  start project bash -c 'cd "$1" && exec "$2" "$3" --config "$4"' _ "$T/project" "$LB_PATH" "${PORT[project]}" \
    "$T/project/config.json"
  ready project "${PORT[project]}" --backends 3 --timeout 30
  has_wl iperf && ready project "${IPORT[project]}"
fi

# ------------------------------------------------------------------ the rounds
FAILED=0
N=${#SYSTEMS[@]}
for wl in "${WORKLOADS[@]}"; do
  nr=$ROUNDS
  [[ $wl == idle ]] && nr=1 # a memory figure: one round
  for ((r = 1; r <= nr; r++)); do
    for ((i = 0; i < N; i++)); do
      s=${SYSTEMS[$(((i + r - 1) % N))]}
      args=(--system "$s" --workload "$wl" --round "$r" --order "$i" --seconds "$DUR" --idle-conns "$IDLE_CONNS"
        --backend-pid "${PID[backend]}" --root-pid $$ --t0 "$START" --out "$T/res/$s.$wl.$r.json")
      ((r == 1)) && [[ $wl != idle ]] && args+=(--warmup "$WARMUP")
      [[ $s == direct ]] || args+=(--proxy-pid "${PID[$s]}")
      if [[ $wl == iperf ]]; then
        args+=(--port "${IPORT[$s]}" --backend-port "$IPERF")
      else
        args+=(--port "${PORT[$s]}" --backend-port "${BE[0]}" --backend-port "${BE[1]}" --backend-port "${BE[2]}")
      fi
      python3 "$LIB" run "${args[@]}" &
      STEP=$!
      rc=0
      wait "$STEP" || rc=$?
      STEP=""
      ((rc == 0)) || FAILED=1
    done
  done
done

# ------------------------------------------------------------------ report
meta=(--set "started_unix=$START" --set "rounds=$ROUNDS" --set "seconds=$DUR" --set "warmup_s=$WARMUP"
  --set "idle_conns=$IDLE_CONNS" --set "nofile=$NOFILE" --set "maxconn=$MAXCONN" --set "port_base=$PB"
  --set "systems=${SYSTEMS[*]}" --set "workloads=${WORKLOADS[*]}" --set "commit=$COMMIT"
  --set "lb=${LB_PATH:--}" --set "self_test=$SELFTEST" --set "rust_log=${RUST_LOG-unset}"
  --noise "$NOISE" --haproxy "$HAPROXY" --nginx "$NGINX" --out "$T/meta.json")
for n in "${NOTES[@]}"; do meta+=(--note "$n"); done
((SELFTEST)) && meta+=(--note "self-test: the 'project' column is HAProxy (bench/standin-lb.py), not the project")
python3 "$LIB" meta "${meta[@]}"
JSON=$OUT
((SELFTEST)) && JSON=${OUT:-$T/report.json}
rc=0
python3 "$LIB" report --dir "$T/res" --meta "$T/meta.json" ${JSON:+--out "$JSON"} || rc=$?
if ((SELFTEST)); then
  python3 "$LIB" self-check "$JSON" || rc=1
fi
((rc == 0 && FAILED == 0)) || exit 1
exit 0
