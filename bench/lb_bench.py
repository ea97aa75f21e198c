#!/usr/bin/env python3
"""lb_bench.py - the measuring half of bench/run.sh (python3 standard library only).

Sub-commands (each bounded in time):
  ports-free PORT...  fail if something already listens on 127.0.0.1:PORT
  wait                poll a freshly started server until it answers (TCP, or HTTP through it)
  noise               how busy the machine is before the run (/proc/stat minus our processes)
  lbconfig            write the project's config (two listeners: web over 3 backends, iperf)
  run                 one workload x one system x one round -> one JSON record
  stop PID...         stop process trees by PID: SIGTERM, SIGKILL after a grace
  report              merge the records: table, per-round percentiles, noise, targets; JSON
  self-check          check a report JSON made against the stand-in (bench/standin-lb.py)
"""

import argparse
import collections
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LUA = os.path.join(HERE, "wrk_done.lua")
TCK = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
ORDER = ["direct", "haproxy", "nginx", "project"]
NOISY_PCT = 10.0  # other load, or steal, above this share of the machine marks a round noisy ('~')


class Fail(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def stat_of(pid):
    """(ppid, state, utime+stime, cutime+cstime, starttime) in ticks, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    f3 = s[s.rindex(")") + 2:].split()  # fields from 3 (state) on: field N is f3[N-3]
    return int(f3[1]), f3[0], int(f3[11]) + int(f3[12]), int(f3[13]) + int(f3[14]), int(f3[19])


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = stat_of(d)
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(roots, procs):
    kids = {}
    for pid, st in procs.items():
        kids.setdefault(st[0], []).append(pid)
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen or p not in procs:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    return seen


def rss_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sched_ns(pid):
    """Time on CPU of all threads of a process, in ns (/proc/PID/task/*/schedstat, field 1)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def server_snap(roots, procs):
    """CPU (ticks and schedstat ns) and RSS summed over the process trees of `roots`."""
    ticks = ns = rss = 0
    pids = sorted(tree(roots, procs))
    for p in pids:
        if procs[p][1] in ("Z", "X"):
            continue
        ticks += procs[p][2]
        ns += sched_ns(p)
        rss += rss_of(p)
    return {"cpu_s": ticks / TCK, "sched_s": ns / 1e9, "rss": rss, "pids": pids}


def tree_ticks_delta(roots, p0, p1):
    """CPU ticks used between two scans by the trees of `roots`, including children that
    started and were reaped in between (they show up in their parent's cutime/cstime)."""
    t0, t1 = tree(roots, p0), tree(roots, p1)
    d = 0
    for pid in t1:
        _, _, own, reaped, start = p1[pid]
        before = p0.get(pid)
        d += own + reaped - (before[2] + before[3] if before and before[4] == start else 0)
    for pid in t0:  # ended meanwhile: its whole life is now in an ancestor's reaped time
        now = p1.get(pid)
        if now is None or now[4] != p0[pid][4]:
            d -= p0[pid][2] + p0[pid][3]
    return max(0, d)


def proc_stat():
    """The machine's 'cpu' line of /proc/stat: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v + [0] * (8 - len(v))


def noise(s0, s1, ours_ticks, all_ticks=None):
    """Shares of the machine between two /proc/stat readings. 'others' is the busy time
    (user+nice+system+irq+softirq: the kernel also charges the softirq it runs in a process's
    context to that process's stime) that our own process tree did not use; irq+softirq and
    steal are also given apart. With all_ticks (every process's CPU between the two scans),
    'others_procs' is the other processes' sum, as compare.sh counts it."""
    d = [b - a for a, b in zip(s0, s1)]
    total = sum(d) or 1
    busy = d[0] + d[1] + d[2] + d[5] + d[6]
    r = {
        "others_pct": round(100 * max(0, busy - ours_ticks) / total, 1),
        "ours_pct": round(100 * min(busy, ours_ticks) / total, 1),
        "irq_pct": round(100 * (d[5] + d[6]) / total, 1),
        "steal_pct": round(100 * d[7] / total, 1),
        "idle_pct": round(100 * (d[3] + d[4]) / total, 1),
    }
    if all_ticks is not None:
        r["others_procs_pct"] = round(100 * max(0, all_ticks - ours_ticks) / total, 1)
    return r


def established_to(ports):
    want = {f"{p:04X}" for p in ports}
    n = 0
    for tbl in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(tbl) as f:
                next(f)
                for line in f:
                    c = line.split(None, 4)
                    if len(c) > 3 and c[3] == "01" and c[2].rsplit(":", 1)[1] in want:
                        n += 1
        except OSError:
            pass
    return n


def alive(pid):
    try:
        return stat_of(pid)[1] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


# --------------------------------------------------------------------------- helpers


def get_ok(port, timeout=1.0):
    """GET /ok with Connection: close -> (status, X-Backend, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data, end = b"", time.monotonic() + timeout
        while time.monotonic() < end:
            b = s.recv(65536)
            if not b:
                break
            data += b
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise OSError(f"no HTTP answer ({len(data)} bytes)")
    lines = head.decode("latin-1").split("\r\n")
    xb = next((l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("x-backend:")), "?")
    return int(lines[0].split()[1]), xb, body


def log_tail(path, n=12):
    try:
        with open(path, errors="replace") as f:
            return "".join("    | " + l for l in f.readlines()[-n:]) or "    | (empty)\n"
    except OSError:
        return "    | (no log)\n"


def cmd_ports_free(a):
    busy = []
    for port in a.ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            busy.append(f"{port} ({e.strerror})")
        finally:
            s.close()
    if busy:
        log("run.sh: ports already in use on 127.0.0.1: " + ", ".join(busy) + " (LB_BENCH_PORT_BASE moves them)")
        return 1
    return 0


def cmd_wait(a):
    t0 = time.monotonic()
    seen, ok, last = set(), 0, "no answer"
    while time.monotonic() - t0 < a.timeout:
        if a.pid and not alive(a.pid):
            log(f"run.sh: {a.name} (pid {a.pid}) exited while starting; its last lines:\n{log_tail(a.log)}")
            return 1
        try:
            if a.backends:
                st, xb, body = get_ok(a.port)
                if st == 200 and body == b"ok":
                    ok += 1
                    seen.add(xb)
                else:
                    last = f"HTTP {st} {body[:30]!r}"
            else:
                socket.create_connection(("127.0.0.1", a.port), timeout=1.0).close()
                ok += 1
        except (OSError, ValueError, IndexError) as e:
            last = str(e) or type(e).__name__
        if ok and len(seen) >= a.backends:
            log(f"  {a.name} ready on :{a.port} after {time.monotonic() - t0:.1f}s")
            return 0
        time.sleep(0.05)
    log(f"run.sh: {a.name} not ready on :{a.port} within {a.timeout:.0f}s ({last}; backends seen "
        f"{sorted(seen)}); its last lines:\n{log_tail(a.log)}")
    return 1


def cmd_stop(a):
    procs = all_procs()
    pids = {p: procs[p][4] for p in tree(a.pids, procs)}
    targets = pids if a.tree else [p for p in a.pids if p in pids]
    for p in targets:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass

    def left():
        out = []
        for p, start in pids.items():
            try:
                st = stat_of(p)
                if st[4] == start and st[1] not in ("Z", "X"):
                    out.append(p)
            except (OSError, ValueError, IndexError):
                pass
        return out

    end = time.monotonic() + a.grace
    while left() and time.monotonic() < end:
        time.sleep(0.05)
    rest = left()
    for p in rest:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if rest:
        log(f"  killed (SIGKILL) after {a.grace:.0f}s: {rest}")
    return 0


def cmd_noise(a):
    """Before the run: the machine's load from others, and the busiest other processes."""
    p0, s0, t0 = all_procs(), proc_stat(), time.monotonic()
    time.sleep(a.seconds)
    p1, s1, wall = all_procs(), proc_stat(), time.monotonic() - t0
    ours = tree_ticks_delta([a.root_pid, os.getpid()], p0, p1)
    n = noise(s0, s1, ours, tree_ticks_delta(set(p0) | set(p1), p0, p1))
    top = []
    mine = tree([a.root_pid], p1) | {os.getpid()}
    for pid, st in p1.items():
        b = p0.get(pid)
        if b and b[4] == st[4] and pid not in mine and st[0] != 2:
            share = (st[2] - b[2]) / TCK / wall
            if share >= 0.05:
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        top.append((share, f"{f.read().strip()}[{pid}] {100 * share:.0f}%"))
                except OSError:
                    pass
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(json.dumps({**n, "loadavg": " ".join(load), "busiest": [t for _, t in sorted(top, reverse=True)[:4]],
                      "seconds": a.seconds}))
    return 0


def cmd_lbconfig(a):
    cfg = {
        "listeners": [{"name": "web", "listen": f"127.0.0.1:{a.port}", "pool": "web",
                       "max_connections": a.max_connections}],
        "pools": {"web": {"algorithm": "round_robin",
                          "backends": [{"name": f"backend-{p}", "address": f"127.0.0.1:{p}"} for p in a.backend],
                          "health_check": {"type": "tcp", "interval": "1s", "timeout": "500ms", "rise": 2, "fall": 2},
                          "retries": 2}},
        "timeouts": {"connect": "1s", "idle": "5m", "shutdown_grace": "2s"},
    }
    if a.iperf_port:
        cfg["listeners"].append({"name": "iperf", "listen": f"127.0.0.1:{a.iperf_port}", "pool": "iperf",
                                 "max_connections": 100})
        cfg["pools"]["iperf"] = {"backends": [{"name": "iperf3", "address": f"127.0.0.1:{a.iperf_backend}"}],
                                 "health_check": {"type": "tcp", "interval": "1s", "timeout": "500ms",
                                                  "rise": 2, "fall": 2}, "retries": 2}
    with open(a.out, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return 0


# --------------------------------------------------------------------------- one measured run

# workload: (kind, unit, what)
WORKLOADS = {
    "conn": ("wrk", "req", "wrk, 32 connections, Connection: close: a new client and backend connection per request"),
    "keepalive": ("wrk", "req", "wrk, 64 persistent connections, GET /ok (2-byte body)"),
    "latency": ("wrk", "req", "wrk, 4 persistent connections, closed loop: the latency percentiles"),
    "bulk": ("wrk", "MiB", "wrk, 4 persistent connections downloading a 16 MiB file"),
    "iperf": ("iperf", "MiB", "iperf3, one TCP stream through the single-backend listener"),
    "idle": ("idle", "conn", "N idle connections opened and held: resident memory per connection"),
}
WRK = {"conn": ("/ok", 32, True, "5s"), "keepalive": ("/ok", 64, False, "5s"),
       "latency": ("/ok", 4, False, "5s"), "bulk": ("/big.bin", 4, False, "20s")}


class Window:
    """Readings around one measured run: the proxy's and the backends' trees, our own tree
    (servers, load generator, this script: for the noise note) and /proc/stat."""

    def __init__(self, a):
        self.a = a

    def __enter__(self):
        self.p0 = all_procs()
        self.s0 = proc_stat()
        self.proxy0 = server_snap(self.a.proxy_pid, self.p0) if self.a.proxy_pid else None
        self.be0 = server_snap(self.a.backend_pid, self.p0)
        self.t0 = time.monotonic()
        return self

    def close(self):
        if hasattr(self, "wall"):
            return
        self.wall = time.monotonic() - self.t0
        self.s1 = proc_stat()
        self.p1 = all_procs()
        self.proxy1 = server_snap(self.a.proxy_pid, self.p1) if self.a.proxy_pid else None
        self.be1 = server_snap(self.a.backend_pid, self.p1)

    def __exit__(self, *exc):
        self.close()
        return False

    def figures(self, units, per):
        r = {"wall_s": round(self.wall, 3)}
        ours = tree_ticks_delta([self.a.root_pid, os.getpid()], self.p0, self.p1)
        loadgen = tree_ticks_delta([os.getpid()], self.p0, self.p1) / TCK
        r["loadgen_cpu_s"] = round(loadgen, 3)
        r.update(noise(self.s0, self.s1, ours, tree_ticks_delta(set(self.p0) | set(self.p1), self.p0, self.p1)))
        if self.proxy0:
            cpu = self.proxy1["cpu_s"] - self.proxy0["cpu_s"]
            sch = self.proxy1["sched_s"] - self.proxy0["sched_s"]
            r["proxy_cpu_s"] = round(cpu, 4)
            r["proxy_cpu_pct"] = round(100 * cpu / self.wall, 1)
            r["proxy_pids"] = self.proxy1["pids"]
            r["rss_before"], r["rss_after"] = self.proxy0["rss"], self.proxy1["rss"]
            r[f"cpu_us_per_{per}"] = round(cpu * 1e6 / units, 3) if units else None
            r[f"sched_us_per_{per}"] = round(sch * 1e6 / units, 3) if units else None
        bcpu = self.be1["cpu_s"] - self.be0["cpu_s"]
        r["backend_cpu_us_per_" + per] = round(bcpu * 1e6 / units, 3) if units else None
        return r


def run_tool(cmd, timeout, env=None):
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise Fail(f"{cmd[0]} did not finish within {timeout:.0f}s")
    except FileNotFoundError:
        raise Fail(f"{cmd[0]} not found")


def wrk_run(a):
    path, conns, close, tmo = WRK[a.workload]
    cmd = ["wrk", "-t", "2", "-c", str(conns), "--timeout", tmo, "-s", LUA]
    if close:
        cmd += ["-H", "Connection: close"]
    url = f"http://127.0.0.1:{a.port}{path}"
    if a.warmup > 0:
        run_tool(cmd + ["-d", f"{a.warmup}s", url], a.warmup + 30)
    cmd += ["-d", f"{a.seconds}s", url]
    with Window(a) as w:
        p = run_tool(cmd, a.seconds + 40)
    line = next((l for l in p.stdout.splitlines() if l.startswith("LB_BENCH ")), None)
    if line is None:
        raise Fail(f"wrk failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    v = {k: float(x) for k, _, x in (kv.partition("=") for kv in line.split()[1:])}
    dur = v["duration_us"] / 1e6
    errors = {k: int(v[k]) for k in ("connect", "read", "write", "status", "timeout")}
    if not v["requests"] or dur <= 0:
        raise Fail(f"wrk completed no request (errors {errors})")
    rec = {"cmd": " ".join(cmd), "duration_s": round(dur, 3), "requests": int(v["requests"]),
           "bytes": int(v["bytes"]), "errors": errors, "error_total": sum(errors.values()),
           "rps": round(v["requests"] / dur, 1), "mib_per_s": round(v["bytes"] / MIB / dur, 2)}
    for q in ("p50", "p90", "p99", "p999", "max", "mean"):
        rec[f"{q}_ms"] = round(v[f"{q}_us"] / 1000, 4)
    if a.workload == "bulk":
        rec.update(unit="MiB", throughput=rec["mib_per_s"])
        return rec, v["bytes"] / MIB, w
    rec.update(unit="req", throughput=rec["rps"])
    return rec, v["requests"], w


def iperf_run(a):
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(a.port), "-t", str(a.seconds), "-J", "--connect-timeout", "3000"]
    last = ""
    for attempt in range(3):  # the iperf3 server refuses while it still winds down the last test
        with Window(a) as w:
            p = run_tool(cmd, a.seconds + 30)
        try:
            j = json.loads(p.stdout)
        except ValueError:
            j = {}
        if p.returncode == 0 and "end" in j and "error" not in j:
            break
        last = j.get("error") or (p.stderr or p.stdout).strip()[-200:]
        log(f"    iperf3 attempt {attempt + 1}: {last}")
        time.sleep(1.0)
    else:
        raise Fail(f"iperf3 failed 3 times: {last}")
    got = j["end"]["sum_received"]
    rec = {"cmd": " ".join(cmd), "unit": "MiB", "duration_s": round(got["seconds"], 3), "bytes": got["bytes"],
           "mib_per_s": round(got["bytes"] / MIB / got["seconds"], 2), "error_total": 0,
           "retransmits": j["end"].get("sum_sent", {}).get("retransmits")}
    rec["throughput"] = rec["mib_per_s"]
    return rec, got["bytes"] / MIB, w


def idle_run(a):
    n = a.idle_conns
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256 if hard == resource.RLIM_INFINITY else min(n + 256, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    n = min(n, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64)
    est0 = established_to(a.backend_port)
    socks, fails, first = [], 0, None
    try:
        with Window(a) as w:
            end = time.monotonic() + max(30.0, n / 200.0)
            while len(socks) + fails < n and time.monotonic() < end and fails <= 50:
                try:
                    s = socket.create_connection(("127.0.0.1", a.port), timeout=3.0)
                    s.setblocking(False)
                    socks.append(s)
                except OSError as e:
                    fails += 1
                    first = first or str(e)
            opened_s = time.monotonic() - w.t0
            # until the proxy holds a backend connection per client connection (bounded)
            target, end = est0 + len(socks), time.monotonic() + 15.0
            est = established_to(a.backend_port)
            while est < target and time.monotonic() < end:
                time.sleep(0.1)
                est = established_to(a.backend_port)
            time.sleep(0.5)
            w.close()
            poll = select.poll()
            for s in socks:
                poll.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
            closed = len(poll.poll(0))  # closed by the proxy: readable (EOF) or hung up
    finally:
        for s in socks:
            s.close()
    held = len(socks) - closed
    if held <= 0:
        raise Fail(f"no idle connection held ({fails} connect failures: {first})")
    rec = {"unit": "conn", "conns_requested": a.idle_conns, "conns": held, "connect_failures": fails,
           "closed_by_peer": closed, "backend_conns": est - est0, "open_s": round(opened_s, 2),
           "error_total": fails + closed, "throughput": held}
    if first:
        rec["first_error"] = first
    return rec, held, w


def cmd_run(a):
    a.proxy_pid = a.proxy_pid or []
    rec = {"system": a.system, "workload": a.workload, "round": a.round, "order": a.order, "ok": False,
           "started_unix": round(time.time(), 3)}
    try:
        dead = [p for p in a.proxy_pid + a.backend_pid if not alive(p)]
        if dead:
            raise Fail(f"not running before the run: pid {dead}")
        r, units, w = {"wrk": wrk_run, "iperf": iperf_run, "idle": idle_run}[WORKLOADS[a.workload][0]](a)
        rec.update(r)
        per = {"req": "req", "MiB": "mib", "conn": "conn"}[r["unit"]]
        rec.update(w.figures(units, per))
        rec["cpu_us_per_unit"] = rec.get(f"cpu_us_per_{per}")
        rec["sched_us_per_unit"] = rec.get(f"sched_us_per_{per}")
        if a.workload == "idle" and a.proxy_pid:
            rec["rss_bytes_per_conn"] = round((rec["rss_after"] - rec["rss_before"]) / units, 1)
        dead = [p for p in a.proxy_pid if not alive(p)]
        if dead:
            raise Fail(f"proxy pid {dead} died during the run")
        rec["ok"] = True
    except Fail as e:
        rec["error"] = str(e)
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=1)
    log(f"[{time.time() - a.t0:4.0f}s]   {progress(rec)}")
    return 0 if rec["ok"] else 3


def progress(r):
    h = f"{r['workload']:<9} r{r['round']} {r['system']:<8}"
    if not r["ok"]:
        return f"{h} FAILED: {r.get('error')}"
    if r["workload"] == "idle":
        s = f"{h} {r['conns']} held" + (f", {r['rss_bytes_per_conn']:.0f} B/conn" if "rss_bytes_per_conn" in r else "")
    else:
        s = f"{h} {r['throughput']:>9,.0f} {'req/s' if r['unit'] == 'req' else 'MiB/s'}"
        if "p99_ms" in r:
            s += f"  p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} ms"
    if r.get("cpu_us_per_unit") is not None:
        s += f"  {r['cpu_us_per_unit']:.1f} CPU-us/{r['unit']}"
    s += f"  others {r['others_pct']:.0f}%"
    if r.get("error_total"):
        s += f"  [errors {r.get('errors', r['error_total'])}]"
    return s


# --------------------------------------------------------------------------- report

# (workload, field, label, higher is better, format)
ROWS = [
    ("conn", "rps", "req/s", True, ",.0f"), ("conn", "cpu_us_per_req", "CPU us/req", False, ".1f"),
    ("conn", "sched_us_per_req", " (schedstat)", False, ".1f"), ("conn", "p50_ms", "p50 ms", False, ".3f"), ("conn", "p99_ms", "p99 ms", False, ".3f"),
    ("keepalive", "rps", "req/s", True, ",.0f"), ("keepalive", "cpu_us_per_req", "CPU us/req", False, ".1f"),
    ("keepalive", "sched_us_per_req", " (schedstat)", False, ".1f"), ("keepalive", "p50_ms", "p50 ms", False, ".3f"), ("keepalive", "p99_ms", "p99 ms", False, ".3f"),
    ("latency", "p50_ms", "p50 ms", False, ".3f"), ("latency", "p99_ms", "p99 ms", False, ".3f"),
    ("latency", "rps", "req/s", True, ",.0f"), ("latency", "cpu_us_per_req", "CPU us/req", False, ".1f"),
    ("bulk", "mib_per_s", "MiB/s", True, ",.0f"), ("bulk", "cpu_us_per_mib", "CPU us/MiB", False, ".1f"),
    ("iperf", "mib_per_s", "MiB/s", True, ",.0f"), ("iperf", "cpu_us_per_mib", "CPU us/MiB", False, ".1f"),
    ("idle", "rss_bytes_per_conn", "RSS B/conn", False, ",.0f"), ("idle", "conns", "conns held", True, ",.0f"),
    # schedstat (ns), not ticks: opening a few hundred connections takes a tick or two of
    # CPU, so a tick-based figure is 1x or 2x by quantization alone
    ("idle", "sched_us_per_conn", "CPU us/conn", False, ".1f"),
]
# the issue's targets, as ratios project / haproxy: (workload, field, label, op, limit, every round?)
TARGETS = [
    ("conn", "cpu_us_per_req", "conn CPU per request", "<=", 0.9, False),
    ("keepalive", "cpu_us_per_req", "keepalive CPU per request", "<=", 0.9, False),
    ("conn", "rps", "conn requests/s", ">=", 1.05, False),
    ("keepalive", "rps", "keepalive requests/s", ">=", 1.05, False),
    ("latency", "p50_ms", "latency p50", "<=", 1.0, False),
    ("latency", "p99_ms", "latency p99, every round", "<=", 1.0, True),
    ("bulk", "mib_per_s", "bulk MiB/s", ">=", 1.2, False),
    ("bulk", "cpu_us_per_mib", "bulk CPU per MiB", "<=", 0.8, False),
    ("iperf", "mib_per_s", "iperf MiB/s", ">=", 1.2, False),
    ("iperf", "cpu_us_per_mib", "iperf CPU per MiB", "<=", 0.8, False),
    ("idle", "rss_bytes_per_conn", "idle RSS per connection", "<=", 0.7, False),
]
PER_ROUND = ["conn", "keepalive", "latency"]


def median(v):
    v = sorted(v)
    n = len(v)
    return None if not n else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)


def aggregate(recs):
    recs = sorted(recs, key=lambda r: r["round"])
    ok = [r for r in recs if r.get("ok")]
    agg = {"ok": bool(ok) and len(ok) == len(recs), "rounds_ok": len(ok), "rounds": recs,
           "error_total": sum(r.get("error_total", 0) for r in ok),
           "errors": [f"round {r['round']}: {r.get('error')}" for r in recs if not r.get("ok")],
           "spread": {}}
    keys = {k for r in ok for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k in sorted(keys - {"round", "order", "started_unix"}):
        vals = [r[k] for r in ok if r.get(k) is not None]
        if vals:
            agg[k] = round(median(vals), 4)
            agg["spread"][k] = [min(vals), max(vals)]
    agg["others_pct_max"] = max((r.get("others_pct", 0) for r in ok), default=0)
    agg["steal_pct_max"] = max((r.get("steal_pct", 0) for r in ok), default=0)
    return agg


def per_round_ratios(raw, wl, field, num, den):
    a = {r["round"]: r for r in raw.get(num, {}).get(wl, []) if r.get("ok") and r.get(field) is not None}
    b = {r["round"]: r for r in raw.get(den, {}).get(wl, []) if r.get("ok") and r.get(field)}
    return {k: a[k][field] / b[k][field] for k in sorted(a) if k in b}


def cmd_report(a):
    raw = {}
    for name in sorted(os.listdir(a.dir)):
        if name.endswith(".json"):
            with open(os.path.join(a.dir, name)) as f:
                r = json.load(f)
            raw.setdefault(r["system"], {}).setdefault(r["workload"], []).append(r)
    with open(a.meta) as f:
        meta = json.load(f)
    meta["elapsed_s"] = round(time.time() - meta.get("started_unix", time.time()), 1)
    systems = [s for s in ORDER if s in meta["systems"]]
    wls = [w for w in WORKLOADS if w in meta["workloads"]]
    agg = {s: {w: aggregate(raw.get(s, {}).get(w, [])) for w in wls} for s in systems}
    refs = [s for s in ("project", "nginx") if s in systems and "haproxy" in systems]

    def val(s, w, f):
        x = agg.get(s, {}).get(w)
        return x.get(f) if x and x["rounds_ok"] else None

    ratios = {}
    for s in refs:
        d = {}
        for w, f, *_ in ROWS:
            if w in wls and f != "conns":
                vn, vd = val(s, w, f), val("haproxy", w, f)
                pr = per_round_ratios(raw, w, f, s, "haproxy")
                d[f"{w}.{f}"] = {"of_medians": None if vn is None or not vd else round(vn / vd, 4),
                                 "per_round": {str(k): round(v, 4) for k, v in pr.items()}}
        ratios[f"{s}/haproxy"] = d

    out = [""]
    out.append(f"bench/run.sh on {meta['host']} ({meta['cpus']} CPUs, {meta.get('cpu_model', '?')}), {meta['date']}")
    out.append(f"project: {meta.get('lb', '-')} (commit {meta.get('commit', '?')})")
    out.append(f"{meta['rounds']} round(s) x {meta['seconds']}s per system and workload (idle: one round of "
               f"{meta['idle_conns']} connections), order of the systems rotated every round; median of the rounds"
               + (", '±' = half the min-max spread, in % of the median" if meta["rounds"] > 1 else ""))
    out.append("")
    cw = 17
    cols = systems + [f"{s}/haproxy" for s in refs]
    hdr = f"{'workload':<10}{'figure':<12}" + "".join(f"{c:>{cw}}" for c in cols)
    out.append(hdr)
    out.append("-" * len(hdr))
    last = None
    for w, f, label, _, fm in ROWS:
        if w not in wls:
            continue
        cells = []
        for s in systems:
            x = agg[s][w]
            v = x.get(f) if x["rounds_ok"] else None
            if not x["rounds_ok"]:
                cells.append("FAILED")
                continue
            if v is None:
                cells.append("-")
                continue
            c = format(v, fm)
            lo, hi = x["spread"].get(f, [v, v])
            if x["rounds_ok"] > 1 and v:
                c += f" ±{50 * (hi - lo) / v:.0f}%"
            flag = "!" if (x["error_total"] or x["errors"]) else ("~" if max(x["others_pct_max"], x["steal_pct_max"]) >= NOISY_PCT else " ")
            cells.append(c + flag)
        for s in refs:
            q = ratios[f"{s}/haproxy"].get(f"{w}.{f}", {}).get("of_medians")
            cells.append("-" if q is None else f"{q:.2f}x")
        out.append(f"{(w if w != last else ''):<10}{label:<12}" + "".join(f"{c:>{cw}}" for c in cells))
        last = w
    out.append("")
    out.append("CPU us/... = the proxy's own CPU (utime+stime of all its processes, /proc/PID/stat) per request,")
    out.append("  MiB or connection; RSS B/conn = growth of its resident memory (VmRSS) per idle connection held;")
    out.append("  x/haproxy = ratio of the medians (req/s, MiB/s: >1 is better; time, CPU, memory: <1 is better).")
    out.append("  '!' errors (see notes), '~' other processes, or the hypervisor (steal), took >= 10% of the")
    out.append("  machine in a round.")

    # latency percentiles round by round: bimodality shows here, not in the medians
    prw = [w for w in PER_ROUND if w in wls]
    if prw:
        out.append("")
        out.append("p50 / p99 ms per round (system order rotates; ratio = project/haproxy in that round)")
        for w in prw:
            hdr = f"{w:<10}{'round':<7}" + "".join(f"{s:>19}" for s in systems) + \
                  ("   p50 / p99 project/haproxy" if "project" in refs else "") + "  others%"
            out.append(hdr)
            rounds = sorted({r["round"] for s in systems for r in raw.get(s, {}).get(w, [])})
            for k in rounds:
                cells, oth = [], []
                for s in systems:
                    r = next((r for r in raw.get(s, {}).get(w, []) if r["round"] == k), None)
                    if r and r.get("ok"):
                        cells.append(f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}")
                        oth.append(r.get("others_pct", 0))
                    else:
                        cells.append("FAILED" if r else "-")
                line = f"{'':<10}{k:<7}" + "".join(f"{c:>19}" for c in cells)
                if "project" in refs:
                    q50 = per_round_ratios(raw, w, "p50_ms", "project", "haproxy").get(k)
                    q99 = per_round_ratios(raw, w, "p99_ms", "project", "haproxy").get(k)
                    line += f"   {'-' if q50 is None else f'{q50:.2f}'} / {'-' if q99 is None else f'{q99:.2f}'}"
                    line += " " * 12
                line += f"  {max(oth, default=0):.0f}"
                out.append(line)

    # the issue's targets
    targets = []
    if "project" in refs:
        out.append("")
        out.append("targets of issue 16 (project / haproxy; one run: the issue asks for the median of 3 runs)")
        hdr = f"{'target':<30}{'limit':>8}{'of medians':>12}{'per round: median [min-max]':>32}{'':>3}verdict"
        out.append(hdr)
        out.append("-" * len(hdr))
        for w, f, label, op, lim, every in TARGETS:
            if w not in wls:
                continue
            q = ratios["project/haproxy"].get(f"{w}.{f}", {})
            qm, pr = q.get("of_medians"), list(q.get("per_round", {}).values())
            if qm is None:
                verdict = "not measured"
            else:
                check = (lambda x: x <= lim) if op == "<=" else (lambda x: x >= lim)
                met = all(check(x) for x in pr) if every and pr else check(qm)
                verdict = "met" if met else "NOT met"
            prs = f"{median(pr):.2f} [{min(pr):.2f}-{max(pr):.2f}]" if pr else "-"
            out.append(f"{label:<30}{op + ' ' + format(lim, 'g'):>8}{'-' if qm is None else f'{qm:.2f}':>12}"
                       f"{prs:>32}{'':>3}{verdict}")
            targets.append({"target": label, "workload": w, "field": f, "op": op, "limit": lim,
                            "every_round": every, "of_medians": qm, "per_round": pr, "verdict": verdict})

    # noise
    allr = [r for s in systems for w in wls for r in raw.get(s, {}).get(w, []) if r.get("ok")]
    oth = [r["others_pct"] for r in allr if "others_pct" in r]
    notes = list(meta.get("notes", []))
    pre = meta.get("noise_before") or {}
    out.append("")
    out.append("noise: others = the machine's busy CPU (/proc/stat) that the benchmark's own processes did not use")
    if pre:
        out.append(f"  before the run (2 s): others {pre.get('others_pct')}% of the machine, softirq+irq {pre.get('irq_pct')}%,"
                   f" steal {pre.get('steal_pct')}%; loadavg {pre.get('loadavg')}"
                   + (f"; busiest: {', '.join(pre['busiest'])}" if pre.get("busiest") else ""))
    if oth:
        noisy = sum(1 for x in oth if x >= NOISY_PCT)
        out.append(f"  during the measured rounds: others median {median(oth):.0f}%, max {max(oth):.0f}% of the machine "
                   f"({noisy} of {len(oth)} rounds at >= {NOISY_PCT:.0f}%); softirq+irq median "
                   f"{median([r.get('irq_pct', 0) for r in allr]):.0f}%; steal max {max(r.get('steal_pct', 0) for r in allr):.0f}%")
        op = [r["others_procs_pct"] for r in allr if "others_procs_pct" in r]
        if op:
            out.append(f"  cross-check, the other processes' own CPU (/proc/*/stat, as compare.sh counts it): median "
                       f"{median(op):.0f}%, max {max(op):.0f}%")
        # the hypervisor taking the CPU away (steal) disturbs a round as much as another process
        stl = [r.get("steal_pct", 0) for r in allr]
        stolen = collections.Counter(r["workload"] for r in allr if r.get("steal_pct", 0) >= NOISY_PCT)
        if stolen:
            out.append(f"  steal >= {NOISY_PCT:.0f}% in {sum(stolen.values())} of {len(stl)} rounds ("
                       + ", ".join(f"{w} {n}" for w, n in stolen.items())
                       + "): the hypervisor took the CPU away; those workloads' figures are its as much as the proxies'")
        verdict = ("quiet" if max(oth) < 5 and max(stl) < 5
                   else "mostly quiet" if median(oth) < NOISY_PCT and median(stl) < NOISY_PCT
                   else "NOISY: compare within this run only, and repeat on a quiet machine")
        out.append(f"  verdict: {verdict}")
        meta["others_pct_median"], meta["others_pct_max"], meta["noise_verdict"] = median(oth), max(oth), verdict
        meta["steal_pct_median"], meta["steal_pct_max"] = median(stl), max(stl)
    for s in systems:
        for w in wls:
            x = agg[s][w]
            for e in x["errors"]:
                notes.append(f"{s}/{w}: {e}")
            if x["error_total"]:
                errs = {}
                for r in x["rounds"]:
                    for k, v in (r.get("errors") or {}).items():
                        errs[k] = errs.get(k, 0) + v
                notes.append(f"{s}/{w}: {x['error_total']} errors {errs or ''}")
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(f"  - {n}" for n in notes)
    out.append("")
    out.append(f"elapsed {meta['elapsed_s']:.0f}s")
    print("\n".join(out))
    if a.out:
        doc = {"meta": meta, "systems": agg, "ratios": ratios, "targets": targets}
        with open(a.out + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(a.out + ".tmp", a.out)
        print(f"raw figures: {a.out}")
    bad = [f"{s}/{w}" for s in systems for w in wls if not agg[s][w]["ok"]]
    if bad:
        log(f"failed: {', '.join(bad)}")
    return 1 if bad else 0


def cmd_self_check(a):
    """After a run against bench/standin-lb.py (HAProxy under the project's name): every cell
    measured, no errors, and each project/haproxy ratio within a wide band around 1."""
    with open(a.json) as f:
        d = json.load(f)
    probs = []
    for s, ws in d["systems"].items():
        for w, x in ws.items():
            if not x["ok"]:
                probs.append(f"{s}/{w} failed: {x['errors']}")
            elif x["error_total"]:
                probs.append(f"{s}/{w}: {x['error_total']} errors")
    quiet = max(d["meta"].get("others_pct_median") or 0, d["meta"].get("steal_pct_median") or 0) < NOISY_PCT
    off = []
    for k, q in d["ratios"].get("project/haproxy", {}).items():
        v = q["of_medians"]
        if v is None:
            probs.append(f"{k}: no ratio")
        elif not (1 / a.band <= v <= a.band):
            off.append(f"{k}: stand-in/haproxy = {v:.2f}, outside [{1 / a.band:.2f}, {a.band:.2f}]")
    # HAProxy against itself: on a quiet machine the ratios must be near 1; on a busy one
    # they only show how noisy it is, so they are reported and do not fail the test
    for o in off:
        log(f"self-test: {'' if quiet else '(noisy machine, not counted) '}{o}")
    if quiet:
        probs.extend(off)
    if not d.get("targets"):
        probs.append("no targets table")
    for p in probs:
        log(f"self-test: {p}")
    log(f"self-test: {'FAILED' if probs else 'ok'} ({len(d['ratios'].get('project/haproxy', {}))} ratios checked,"
        f" band x{a.band:g})")
    return 1 if probs else 0


def cmd_meta(a):
    meta = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        meta[k] = int(v) if v.lstrip("-").isdigit() else v
    for k in ("systems", "workloads"):
        meta[k] = str(meta.get(k, "")).split()
    meta["notes"] = a.note
    meta["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    meta["host"] = socket.gethostname()
    meta["cpus"] = os.cpu_count()
    meta["kernel"] = os.uname().release
    with open("/proc/cpuinfo") as f:
        meta["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    if a.noise:
        try:
            meta["noise_before"] = json.loads(a.noise)
        except ValueError:
            pass
    vers = {}
    for name, cmd in (("haproxy", [a.haproxy, "-v"]), ("nginx", [a.nginx, "-v"]), ("wrk", ["wrk", "-v"]),
                      ("iperf3", ["iperf3", "--version"])):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
            vers[name] = (p.stdout.strip().splitlines() or ["?"])[0]
        except (OSError, subprocess.TimeoutExpired) as e:
            vers[name] = f"? ({e})"
    meta["versions"] = vers
    with open(a.out, "w") as f:
        json.dump(meta, f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports-free")
    p.add_argument("ports", type=int, nargs="+")
    p = sub.add_parser("wait")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--log", default="")
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--backends", type=int, default=0, help="HTTP through it until this many backends answered")
    p = sub.add_parser("noise")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--root-pid", type=int, required=True)
    p = sub.add_parser("lbconfig")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backend", type=int, action="append", required=True)
    p.add_argument("--iperf-port", type=int)
    p.add_argument("--iperf-backend", type=int)
    p.add_argument("--max-connections", type=int, default=10000)
    p.add_argument("--out", required=True)
    p = sub.add_parser("run")
    p.add_argument("--system", required=True)
    p.add_argument("--workload", required=True, choices=list(WORKLOADS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--proxy-pid", type=int, action="append")
    p.add_argument("--backend-pid", type=int, action="append", required=True)
    p.add_argument("--backend-port", type=int, action="append", default=[])
    p.add_argument("--root-pid", type=int, required=True, help="run.sh: every process it started is 'ours'")
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--idle-conns", type=int, default=5000)
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--order", type=int, default=0)
    p.add_argument("--t0", type=float, default=0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("stop")
    p.add_argument("pids", type=int, nargs="+")
    p.add_argument("--grace", type=float, default=5)
    p.add_argument("--tree", action="store_true", help="SIGTERM every process of the trees, not only the roots")
    p = sub.add_parser("meta")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--noise", default="")
    p.add_argument("--haproxy", default="/usr/sbin/haproxy")
    p.add_argument("--nginx", default="/usr/sbin/nginx")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--out")
    p = sub.add_parser("self-check")
    p.add_argument("json")
    p.add_argument("--band", type=float, default=1.6)
    a = ap.parse_args()
    return {"ports-free": cmd_ports_free, "wait": cmd_wait, "noise": cmd_noise, "lbconfig": cmd_lbconfig,
            "run": cmd_run, "stop": cmd_stop, "meta": cmd_meta, "report": cmd_report,
            "self-check": cmd_self_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
