#!/usr/bin/env python3
"""sni_bench.py - helper of bench/sni.sh: new TLS connections through a TCP proxy that
routes by server name (SNI), and the proxy's CPU per connection (python3 standard library).

Sub-commands (all bounded in time):
  ports-free PORT...   fail if something already listens on 127.0.0.1:PORT
  preflight            how busy other processes keep the machine, before anything starts
  wait                 poll a freshly started server until TLS through it reaches the
                       expected backend for every server name
  run                  one measured round of one system: W client processes, each a loop of
                       new TLS connections (full handshake, GET /ok, read the answer, close)
  stop PID...          stop process trees by PID: SIGTERM, SIGKILL after a grace period
  report               merge the per-round records: table on stdout, JSON file

The /proc accounting (process trees, utime+stime, other processes' CPU) is the team's
shared/bench/benchlib.py when it can be found (env BENCHLIB, ../shared/bench next to the
repository, /work/shared/bench), else the equivalent minimal copy below.
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import ssl
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
FOREIGN_WARN_PCT = 10  # other processes above this share of the machine: the round is "noisy"
HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc accounting


def _load_benchlib():
    cands = [os.environ.get("BENCHLIB", ""),
             os.path.join(HERE, "..", "..", "shared", "bench"),
             os.path.join(HERE, "..", "shared", "bench"),
             "/work/shared/bench"]
    for d in cands:
        if d and os.path.isfile(os.path.join(d, "benchlib.py")):
            sys.path.insert(0, os.path.abspath(d))
            sys.dont_write_bytecode = True  # leave shared/ as it is: no __pycache__ there
            try:
                import benchlib  # noqa: E402
                need = ("read_stat", "scan", "process_tree", "snapshot", "foreign_cpu", "alive")
                if all(hasattr(benchlib, n) for n in need):
                    return benchlib, os.path.abspath(os.path.join(d, "benchlib.py"))
            except Exception as e:  # a broken or incompatible copy: use ours
                log(f"note: could not use {d}/benchlib.py ({e}); using the built-in accounting")
            finally:
                sys.path.pop(0)
    return None, None


def read_stat(pid):
    """(ppid, state, own ticks, reaped children's ticks, starttime) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    return (int(rest[1]), rest[0], int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14]),
            int(rest[19]))


def scan():
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                procs[int(name)] = read_stat(name)
            except (OSError, ValueError, IndexError):
                continue
    return procs


def process_tree(roots, procs=None):
    procs = scan() if procs is None else procs
    kids = {}
    for pid, st in procs.items():
        kids.setdefault(st[0], []).append(pid)
    seen, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack.extend(kids.get(pid, []))
    return seen


def alive(pid, starttime=None):
    try:
        _, state, _, _, st = read_stat(pid)
    except (OSError, ValueError, IndexError):
        return False
    if state in ("Z", "X"):
        return False
    return starttime is None or st == starttime


def snapshot(roots, procs=None):
    if not roots:
        return None
    procs = scan() if procs is None else procs
    ticks, pids = 0, []
    for pid in process_tree(roots, procs):
        st = procs.get(pid)
        if st is None or st[1] in ("Z", "X"):
            continue
        ticks += st[2]
        pids.append(pid)
    return {"cpu_s": ticks / CLK_TCK, "pids": pids}


def foreign_cpu(procs0, procs1, ours):
    """CPU seconds of processes outside the benchmark between two scans: (user, kernel threads)."""
    excl = set(process_tree(ours, procs0)) | set(process_tree(ours, procs1))
    user = kern = 0
    for pid, (ppid, _, own, reaped, start) in procs1.items():
        if pid in excl:
            continue
        prev = procs0.get(pid)
        d = own + reaped - (prev[2] + prev[3] if prev and prev[4] == start else 0)
        if pid == 2 or ppid == 2:
            kern += d
        else:
            user += d
    for pid, (ppid, _, own, reaped, start) in procs0.items():
        now = procs1.get(pid)
        if pid not in excl and ppid != 2 and (now is None or now[4] != start):
            user -= own + reaped
    return max(0, user) / CLK_TCK, max(0, kern) / CLK_TCK


BENCHLIB, BENCHLIB_PATH = _load_benchlib()
if BENCHLIB is not None:
    read_stat, scan, process_tree, alive = (BENCHLIB.read_stat, BENCHLIB.scan, BENCHLIB.process_tree,
                                            BENCHLIB.alive)
    snapshot, foreign_cpu = BENCHLIB.snapshot, BENCHLIB.foreign_cpu


def sched_cpu_s(roots, procs):
    """CPU time of the roots' process trees from /proc/PID/task/TID/schedstat (nanoseconds, not
    10 ms ticks): a finer cross-check of utime+stime. Threads that exit in between drop out."""
    ns = 0
    for pid in process_tree(roots, procs):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return ns / 1e9


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------- the TLS client


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed backends; the handshake is full all the same
    return ctx


def tls_get(ctx, port, name, timeout):
    """One new TLS connection: handshake with server_name=name, GET /ok, read to EOF, close.
    Returns (status, x-backend header, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            s.sendall(b"GET /ok HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
            chunks = []
            while True:
                b = s.recv(16384)
                if not b:
                    break
                chunks.append(b)
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no HTTP response ({len(data)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    backend = ""
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "x-backend":
            backend = v.strip()
    return status, backend, body


def parse_routes(items):
    """['name=port', ...] -> [(name, 'port'), ...] in the given order."""
    out = []
    for it in items:
        name, sep, port = it.partition("=")
        if not sep or not name or not port.isdigit():
            raise SystemExit(f"bad --route {it!r} (want NAME=BACKEND_PORT)")
        out.append((name, port))
    return out


ERROR_KINDS = ("connect", "tls", "timeout", "io", "status", "misrouted")


def worker(idx, port, routes, go, times, timeout, q, interval=0.0, nworkers=1):
    """One client process: new connections back to back until times[1] (monotonic clock,
    shared by all processes on Linux); the server names cycle through `routes`. With `interval` > 0,
    a new connection starts every `interval` seconds at most (paced: same arrivals for every
    system, as long as it keeps up)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    ctx = client_context()
    errors = dict.fromkeys(ERROR_KINDS, 0)
    first_error = None
    lat = []
    per_name = {}
    i = idx
    go.wait(60)
    start, deadline = times[0], times[1]
    nxt = start + interval * idx / nworkers  # the workers' paced starts interleave
    while time.monotonic() < deadline:
        if interval:
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
                if nxt >= deadline:
                    break
            nxt = max(nxt + interval, time.monotonic() - interval)  # no burst after a stall
        name, want = routes[i % len(routes)]
        i += 1
        t0 = time.monotonic()
        kind = None
        try:
            status, backend, body = tls_get(ctx, port, name, timeout)
            if status != 200 or body != b"ok":
                kind, detail = "status", f"HTTP {status} body {body[:30]!r}"
            elif backend != want:
                kind, detail = "misrouted", f"{name} reached backend {backend or '?'}, expected {want}"
        except ConnectionRefusedError as e:
            kind, detail = "connect", str(e)
        except ssl.SSLError as e:
            kind, detail = "tls", str(e)
        except socket.timeout as e:
            kind, detail = "timeout", str(e) or "timed out"
        except (OSError, ValueError, IndexError) as e:
            kind, detail = "io", f"{e.__class__.__name__}: {e}"
        if kind is None:
            lat.append(time.monotonic() - t0)
            per_name[name] = per_name.get(name, 0) + 1
        else:
            errors[kind] += 1
            first_error = first_error or f"{kind}: {detail}"
            time.sleep(0.002)  # no tight loop on a dead port
    q.put({"idx": idx, "lat": lat, "errors": errors, "first_error": first_error, "per_name": per_name})


def run_clients(port, routes, workers, seconds, timeout, before_go=None, rate=0.0):
    """Runs `workers` client processes for `seconds`; before_go() is called once they are all
    started, right before they begin. rate > 0: at most that many new connections per second
    in all (paced). Returns (merged result, wall seconds of the load)."""
    ctx = mp.get_context("fork")
    go, times, q = ctx.Event(), ctx.Array("d", 2), ctx.Queue()
    interval = workers / rate if rate > 0 else 0.0
    procs = [ctx.Process(target=worker, args=(i, port, routes, go, times, timeout, q, interval, workers),
                         daemon=True)
             for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # let them import nothing and reach go.wait()
    if before_go:
        before_go()
    t0 = time.monotonic()
    times[0], times[1] = t0, t0 + seconds
    go.set()
    results = []
    hard = t0 + seconds + timeout + 15
    while len(results) < workers and time.monotonic() < hard:
        try:
            results.append(q.get(timeout=max(0.1, hard - time.monotonic())))
        except Exception:
            break
    wall = time.monotonic() - t0
    for p in procs:
        p.join(timeout=max(0.1, hard - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1)
    lat, errors, per_name, first = [], dict.fromkeys(ERROR_KINDS, 0), {}, None
    for r in results:
        lat.extend(r["lat"])
        for k, v in r["errors"].items():
            errors[k] += v
        for k, v in r["per_name"].items():
            per_name[k] = per_name.get(k, 0) + v
        first = first or r["first_error"]
    missing = workers - len(results)
    return {"lat": lat, "errors": errors, "per_name": per_name, "first_error": first,
            "workers_lost": missing}, wall


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# --------------------------------------------------------------------------- sub-commands


def cmd_ports_free(a):
    busy = []
    for port in a.ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            busy.append(f"{port} ({e.strerror})")
        finally:
            s.close()
    if busy:
        log("error: these ports are already in use on 127.0.0.1: " + ", ".join(busy))
        log("       (another run still going? set SNI_BENCH_PORT_BASE to move the port range)")
        return 1
    return 0


def cmd_preflight(a):
    procs0, t0 = scan(), time.monotonic()
    time.sleep(a.seconds)
    procs1, wall = scan(), time.monotonic() - t0
    user, _ = foreign_cpu(procs0, procs1, [os.getpid(), os.getppid()])
    share = 100 * user / ((os.cpu_count() or 1) * wall)
    busiest = []
    for pid, st in procs1.items():
        prev = procs0.get(pid)
        if prev and prev[4] == st[4] and st[0] != 2 and pid not in (os.getpid(), os.getppid()):
            d = (st[2] - prev[2]) / CLK_TCK / wall
            if d >= 0.05:
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        busiest.append((d, f"{f.read().strip()}[{pid}] {100 * d:.0f}%"))
                except OSError:
                    pass
    print(f"{share:.1f}\t" + ", ".join(x for _, x in sorted(busiest, reverse=True)[:4]))
    return 0


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()[-n:]
        return "".join("    | " + l for l in lines) or "    | (empty)\n"
    except OSError:
        return "    | (no log)\n"


def cmd_wait(a):
    routes = parse_routes(a.route)
    ctx = client_context()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    good, last = set(), "no answer yet"
    while time.monotonic() < deadline:
        if a.pid and not alive(a.pid):
            log(f"error: {a.name} (pid {a.pid}) exited during startup; the last lines of its output:")
            log(tail(a.log))
            return 1
        for name, want in routes:
            if name in good:
                continue
            try:
                status, backend, body = tls_get(ctx, a.port, name, 2.0)
                if status == 200 and body == b"ok" and backend == want:
                    good.add(name)
                else:
                    last = f"{name}: HTTP {status} from backend {backend or '?'} (want {want}), body {body[:30]!r}"
            except (OSError, ValueError, IndexError) as e:
                last = f"{name}: {e.__class__.__name__}: {e}"
        if len(good) == len(routes):
            log(f"  {a.name}: ready on 127.0.0.1:{a.port} after {time.monotonic() - t0:.1f}s "
                f"(every server name reached its backend)")
            return 0
        time.sleep(0.1)
    log(f"error: {a.name} on 127.0.0.1:{a.port} did not route every server name within {a.timeout:.0f}s "
        f"(last: {last}); the last lines of its output:")
    log(tail(a.log))
    return 1


def cmd_stop(a):
    procs = {}
    for pid in process_tree(a.pids):
        try:
            procs[pid] = read_stat(pid)[4]
        except (OSError, ValueError, IndexError):
            pass
    for pid in a.pids:
        if pid in procs and alive(pid, procs[pid]):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + a.grace
    while time.monotonic() < deadline and any(alive(p, st) for p, st in procs.items()):
        time.sleep(0.05)
    left = [p for p, st in procs.items() if alive(p, st)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        log(f"  note: killed (SIGKILL) pids that ignored SIGTERM for {a.grace:.0f}s: {left}")
    return 0


def cmd_run(a):
    routes = parse_routes(a.route)
    proxy = a.proxy_pid or []
    backend = a.backend_pid or []
    ours = proxy + backend + (a.server_pid or []) + [os.getpid(), os.getppid()]
    rec = {"system": a.system, "round": a.round, "order": a.order, "ok": False, "port": a.port,
           "workers": a.workers, "rate": a.rate, "routes": dict(routes)}
    t_start = time.time()
    try:
        dead = [p for p in proxy + backend if not alive(p)]
        if dead:
            raise RuntimeError(f"process(es) {dead} not running before the round (crashed earlier?)")
        if a.warmup > 0:
            run_clients(a.port, routes, a.workers, a.warmup, a.timeout, rate=a.rate)
        snap = {}

        def before_go():
            snap["procs0"] = scan()
            snap["p0"] = snapshot(proxy, snap["procs0"])
            snap["b0"] = snapshot(backend, snap["procs0"])
            snap["s0"] = sched_cpu_s(proxy, snap["procs0"]) if proxy else None
            snap["c0"] = children_cpu()

        res, wall = run_clients(a.port, routes, a.workers, a.seconds, a.timeout, before_go, a.rate)
        procs1 = scan()
        p1, b1 = snapshot(proxy, procs1), snapshot(backend, procs1)
        s1 = sched_cpu_s(proxy, procs1) if proxy else None
        loadgen = children_cpu() - snap["c0"]
        user, kern = foreign_cpu(snap["procs0"], procs1, ours)
        dead = [p for p in proxy if not alive(p)]
        if dead:
            raise RuntimeError(f"proxy process(es) {dead} died during the round")
        lat = sorted(res["lat"])
        n = len(lat)
        errs = res["errors"]
        rec.update({
            "wall_s": round(wall, 3),
            "conns": n,
            "cps": round(n / wall, 1) if wall > 0 else None,
            "errors": errs,
            "error_total": sum(errs.values()) + res["workers_lost"],
            "workers_lost": res["workers_lost"],
            "per_name": res["per_name"],
            "p50_ms": round(1000 * pct(lat, 50), 3) if n else None,
            "p90_ms": round(1000 * pct(lat, 90), 3) if n else None,
            "p99_ms": round(1000 * pct(lat, 99), 3) if n else None,
            "mean_ms": round(1000 * sum(lat) / n, 3) if n else None,
            "loadgen_cpu_s": round(loadgen, 3),
            "loadgen_cpu_us_per_conn": round(loadgen * 1e6 / n, 1) if n else None,
            "foreign_cpu_s": round(user, 3),
            "foreign_cpu_pct": round(100 * user / ((os.cpu_count() or 1) * wall), 1) if wall > 0 else 0,
            "kthread_cpu_s": round(kern, 3),
        })
        if res["first_error"]:
            rec["first_error"] = res["first_error"]
        if proxy:
            cpu = p1["cpu_s"] - snap["p0"]["cpu_s"]
            rec["proxy_cpu_s"] = round(cpu, 4)
            rec["proxy_cpu_pct"] = round(100 * cpu / wall, 1)
            rec["proxy_pids"] = p1["pids"]
            rec["cpu_us_per_conn"] = round(cpu * 1e6 / n, 2) if n else None
            scpu = s1 - snap["s0"]
            rec["proxy_sched_cpu_s"] = round(scpu, 6)
            rec["sched_us_per_conn"] = round(scpu * 1e6 / n, 2) if n else None
        else:
            rec["proxy_cpu_s"] = rec["cpu_us_per_conn"] = rec["proxy_cpu_pct"] = None
        if backend:
            bcpu = b1["cpu_s"] - snap["b0"]["cpu_s"]
            rec["backend_cpu_s"] = round(bcpu, 4)
            rec["backend_cpu_us_per_conn"] = round(bcpu * 1e6 / n, 1) if n else None
        if n == 0:
            raise RuntimeError(f"no connection completed ({res['first_error']})")
        rec["ok"] = True
    except RuntimeError as e:
        rec["error"] = str(e)
    rec["started_unix"] = round(t_start, 3)
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=1)
    log(f"[{time.time() - a.t0:4.0f}s]   " + progress_line(rec) if a.t0 else "  " + progress_line(rec))
    return 0 if rec["ok"] else 3


def progress_line(r):
    head = f"r{r['round']} {r['system']:<17}"
    if not r.get("ok"):
        return f"{head} FAILED: {r.get('error')}"
    s = f"{head} {r['cps']:>7,.0f} conn/s  p50 {r['p50_ms']:6.2f} p99 {r['p99_ms']:7.2f} ms"
    if r.get("cpu_us_per_conn") is not None:
        s += f"  proxy {r['cpu_us_per_conn']:6.1f} CPU-us/conn ({r['proxy_cpu_pct']:.0f}% of a core)"
    if r.get("foreign_cpu_pct", 0) >= FOREIGN_WARN_PCT:
        s += f"  [others: {r['foreign_cpu_pct']:.0f}% of the machine]"
    if r.get("error_total"):
        s += f"  [errors {r['error_total']}: {r.get('first_error')}]"
    return s


# --------------------------------------------------------------------------- report


def median(vals):
    v = sorted(vals)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


FIELDS = ["cps", "cpu_us_per_conn", "sched_us_per_conn", "p50_ms", "p99_ms", "proxy_cpu_pct", "backend_cpu_us_per_conn",
          "loadgen_cpu_us_per_conn", "foreign_cpu_pct"]
ORDER = ["direct", "haproxy-plain", "haproxy-sni", "haproxy-sni-defer", "project-plain", "project-sni"]
PAIRS = [  # (label, numerator, denominator, field, note)
    ("project-sni / project-plain", "project-sni", "project-plain", "cpu_us_per_conn",
     "routing overhead of the project (target < 1.05)"),
    ("project-sni / haproxy-sni", "project-sni", "haproxy-sni", "cpu_us_per_conn",
     "project vs HAProxy, both routing by SNI"),
    ("haproxy-sni / haproxy-plain", "haproxy-sni", "haproxy-plain", "cpu_us_per_conn",
     "HAProxy's own inspection overhead (reference)"),
    ("haproxy-sni-defer / haproxy-plain", "haproxy-sni-defer", "haproxy-plain", "cpu_us_per_conn",
     "the same with defer-accept (TCP_DEFER_ACCEPT)"),
    ("project-plain / haproxy-plain", "project-plain", "haproxy-plain", "cpu_us_per_conn",
     "plain forwarding, project vs HAProxy"),
    ("project-sni / project-plain", "project-sni", "project-plain", "sched_us_per_conn",
     "the same from schedstat (ns, cross-check)"),
    ("project-sni / haproxy-sni", "project-sni", "haproxy-sni", "sched_us_per_conn",
     "the same from schedstat (ns, cross-check)"),
    ("project-sni / haproxy-sni", "project-sni", "haproxy-sni", "cps", "throughput (whole machine)"),
    ("project-sni / project-plain", "project-sni", "project-plain", "cps", "throughput (whole machine)"),
    ("project-sni / project-plain", "project-sni", "project-plain", "p50_ms", "median connection time"),
]


def aggregate(rounds):
    rounds = sorted(rounds, key=lambda r: r["round"])
    ok = [r for r in rounds if r.get("ok")]
    agg = {"ok": bool(ok) and len(ok) == len(rounds), "rounds_ok": len(ok), "rounds_total": len(rounds)}
    errs = [f"round {r['round']}: {r.get('error')}" for r in rounds if not r.get("ok")]
    if errs:
        agg["error"] = "; ".join(errs)
    spread = {}
    for k in FIELDS:
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            agg[k] = round(median(vals), 3)
            spread[k] = [min(vals), max(vals)]
    agg["spread"] = spread
    agg["conns"] = sum(r.get("conns", 0) for r in ok)
    agg["error_total"] = sum(r.get("error_total", 0) for r in rounds)
    agg["errors"] = {}
    for r in ok:
        for k, v in r.get("errors", {}).items():
            if v:
                agg["errors"][k] = agg["errors"].get(k, 0) + v
    firsts = [r["first_error"] for r in ok if r.get("first_error")]
    if firsts:
        agg["first_error"] = firsts[0]
    agg["foreign_cpu_pct_max"] = max((r.get("foreign_cpu_pct", 0) for r in ok), default=0)
    agg["rounds"] = rounds
    return agg


def cmd_report(a):
    raw = {}
    for name in sorted(os.listdir(a.dir)):
        if name.endswith(".json"):
            with open(os.path.join(a.dir, name)) as f:
                r = json.load(f)
            raw.setdefault(r["system"], []).append(r)
    meta = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        meta[k] = int(v) if v.lstrip("-").isdigit() else v
    meta["notes"] = list(a.note)
    meta["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    meta["host"] = socket.gethostname()
    meta["cpus"] = os.cpu_count()
    meta["kernel"] = os.uname().release
    meta["accounting"] = BENCHLIB_PATH or "built-in copy (shared/bench/benchlib.py not found)"
    try:
        with open("/proc/cpuinfo") as f:
            meta["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    if "started_unix" in meta:
        meta["elapsed_s"] = round(time.time() - meta["started_unix"], 1)
    systems = [s for s in ORDER if s in raw] + sorted(s for s in raw if s not in ORDER)
    recs = {s: aggregate(raw[s]) for s in systems}
    doc = {"meta": meta, "systems": recs}

    def val(s, field):
        r = recs.get(s)
        return r.get(field) if r and r.get("rounds_ok") else None

    # ratios of the medians, and the same ratio taken round by round (both systems measured
    # within the same round, a few seconds apart) with its median and min/max
    ratios = []
    for label, num, den, field, note in PAIRS:
        if num not in recs or den not in recs:
            continue
        vn, vd = val(num, field), val(den, field)
        q = vn / vd if vn is not None and vd else None
        byround = {r["round"]: r for r in raw[den] if r.get("ok") and r.get(field)}
        paired = [r[field] / byround[r["round"]][field] for r in raw[num]
                  if r.get("ok") and r.get(field) is not None and r["round"] in byround]
        ratios.append({"label": label, "field": field, "note": note,
                       "ratio_of_medians": None if q is None else round(q, 4),
                       "per_round_median": round(median(paired), 4) if paired else None,
                       "per_round_min": round(min(paired), 4) if paired else None,
                       "per_round_max": round(max(paired), 4) if paired else None,
                       "per_round": [round(x, 4) for x in paired]})
    doc["ratios"] = ratios

    out = []
    out.append("")
    out.append(f"TLS passthrough, routing by server name: new TLS connections on {meta['host']} "
               f"({meta['cpus']} CPUs, {meta.get('cpu_model', '?')}), {meta['date']}")
    rate = float(meta.get("rate") or 0)
    out.append(f"{meta.get('rounds', '?')} rounds x {meta.get('seconds', '?')}s per system, order rotated "
               f"every round; {meta.get('workers', '?')} client processes"
               + (f" paced to {rate:g} new connections/s in all" if rate > 0 else " (closed loop)")
               + ", each connection: TCP connect, full TLS handshake, GET /ok, read to EOF, close;")
    out.append("server names cycle through: " + meta.get("names", "?"))
    out.append("median of the rounds [min-max]")
    out.append("")
    hdr = (f"{'system':<18}{'conn/s':>20}{'proxy CPU us/conn':>24}{'(schedstat)':>12}{'p50 ms':>9}{'p99 ms':>9}"
           f"{'errors':>8}{'others%':>9}")
    out.append(hdr)
    out.append("-" * len(hdr))
    for s in systems:
        r = recs[s]
        if not r["rounds_ok"]:
            out.append(f"{s:<18}{'FAILED':>20}   {r.get('error', '')}")
            continue

        def cell(field, fmt):
            v = r.get(field)
            if v is None:
                return "-"
            lo, hi = r["spread"][field]
            return f"{v:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]"

        flag = "!" if r["error_total"] else ("~" if r["foreign_cpu_pct_max"] >= FOREIGN_WARN_PCT else " ")
        sch = r.get("sched_us_per_conn")
        out.append(f"{s:<18}{cell('cps', ',.0f'):>20}{cell('cpu_us_per_conn', '.1f'):>24}"
                   f"{'-' if sch is None else format(sch, '.1f'):>12}"
                   f"{r.get('p50_ms', 0):>9.2f}{r.get('p99_ms', 0):>9.2f}{r['error_total']:>8}"
                   f"{r['foreign_cpu_pct_max']:>8.0f}{flag}")
    out.append("")
    out.append("proxy CPU us/conn = utime+stime of the proxy's processes (all threads, all children) over the")
    out.append("  round / connections completed in it ((schedstat): the same from the threads' schedstat, in ns);")
    out.append("  conn/s and p50/p99 (whole connection: connect, handshake,")
    out.append("  request, answer, close) depend on the whole machine: client, proxy and")
    out.append("  TLS backends share 2 CPUs.")
    out.append("others% = the largest share of the machine's CPU used by processes outside the benchmark in a round")
    out.append("  ('~' when >= 10%: noisy); '!' = errors (see notes).")
    if ratios:
        out.append("")
        out.append("ratios (CPU and time: <1 is better; conn/s: >1 is better)")
        h2 = f"{'':<36}{'figure':<18}{'of medians':>11}{'per round: median [min-max]':>32}"
        out.append(h2)
        out.append("-" * len(h2))
        for q in ratios:
            rom = "-" if q["ratio_of_medians"] is None else f"{q['ratio_of_medians']:.3f}"
            pr = "-" if q["per_round_median"] is None else (
                f"{q['per_round_median']:.3f} [{q['per_round_min']:.3f}-{q['per_round_max']:.3f}]")
            out.append(f"{q['label']:<36}{q['field']:<18}{rom:>11}{pr:>32}   {q['note']}")
        gate = next((q for q in ratios if q["label"] == "project-sni / project-plain"
                     and q["field"] == "cpu_us_per_conn"), None)
        if gate and gate["ratio_of_medians"] is not None:
            v = gate["ratio_of_medians"]
            verdict = "within" if v < 1.05 else "OVER"
            out.append("")
            out.append(f"routing overhead (project-sni / project-plain, CPU per connection): {v:.3f} -> "
                       f"{verdict} the 1.05 target"
                       + ("" if gate["per_round_max"] < 1.05 or v >= 1.05 else
                          f" (but single rounds reached {gate['per_round_max']:.3f}: noise)"))
    notes = list(meta.get("notes", []))
    for s in systems:
        r = recs[s]
        if r["error_total"]:
            notes.append(f"{s}: {r['error_total']} errors {r['errors']} (first: {r.get('first_error')})")
        if r.get("error"):
            notes.append(f"{s}: {r['error']}")
        if rate > 0 and r.get("cps") and r["spread"]["cps"][0] < 0.97 * rate:
            notes.append(f"{s}: did not keep up with the paced rate in every round "
                         f"(lowest {r['spread']['cps'][0]:,.0f} conn/s of {rate:g})")
    fmax = max((recs[s]["foreign_cpu_pct_max"] for s in systems), default=0)
    allf = [r.get("foreign_cpu_pct", 0) for s in systems for r in raw[s] if r.get("ok")]
    if allf:
        notes.append(f"other processes' share of the machine per round: median {median(allf):.0f}%, "
                     f"max {fmax:.0f}%" + (" (noisy run)" if fmax >= FOREIGN_WARN_PCT else ""))
    meta["foreign_cpu_pct_median"] = round(median(allf), 1) if allf else None
    meta["foreign_cpu_pct_max"] = fmax
    if notes:
        out.append("")
        out.append("notes:")
        for n in notes:
            out.append(f"  - {n}")
    out.append("")
    out.append(f"elapsed {meta.get('elapsed_s', '?')}s; accounting: {meta['accounting']}")
    print("\n".join(out))
    if a.out:
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, a.out)
        print(f"raw figures: {a.out}")
    bad = [s for s in systems if not recs[s]["ok"]]
    if bad:
        log(f"failed rounds: {', '.join(bad)}")
    return 1 if bad else 0


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("ports-free")
    p.add_argument("ports", type=int, nargs="+")

    p = sub.add_parser("preflight")
    p.add_argument("--seconds", type=float, default=1.0)

    p = sub.add_parser("wait")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--log", default="")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--route", action="append", required=True, metavar="NAME=BACKEND_PORT")

    p = sub.add_parser("run")
    p.add_argument("--system", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--route", action="append", required=True, metavar="NAME=BACKEND_PORT",
                   help="a server name to send and the backend port that must answer it")
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--order", type=int, default=0, help="position of the system within its round")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--warmup", type=float, default=0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rate", type=float, default=0, help="new connections per second in all (0: closed loop)")
    p.add_argument("--timeout", type=float, default=5, help="per-connection socket timeout")
    p.add_argument("--proxy-pid", type=int, action="append")
    p.add_argument("--backend-pid", type=int, action="append")
    p.add_argument("--server-pid", type=int, action="append")
    p.add_argument("--t0", type=float, default=0)
    p.add_argument("--out", required=True)

    p = sub.add_parser("stop")
    p.add_argument("pids", type=int, nargs="+")
    p.add_argument("--grace", type=float, default=5)

    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--out")

    a = ap.parse_args()
    return {"ports-free": cmd_ports_free, "preflight": cmd_preflight, "wait": cmd_wait, "run": cmd_run,
            "stop": cmd_stop, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
