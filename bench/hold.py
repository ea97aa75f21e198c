#!/usr/bin/env python3
"""hold.py - many concurrent proxied connections, every one verified byte for byte.

Starts two echo backends (the project's `server --echo`) and the load balancer on
127.0.0.1, opens --conns client connections through it and keeps them all open, then sends
a different payload on every one and checks that exactly those bytes come back, while all of
them are still open. Reports how many were held and verified, the load balancer's memory per
connection (VmRSS growth) and the time it took. Every process it starts is stopped by its PID
(SIGTERM, then SIGKILL after 5 s), also on Ctrl-C.

    cargo build --release -p lb-runtime --bins
    python3 bench/hold.py                  # 9,900 connections (issue 16's target)
    python3 bench/hold.py --conns 2000     # a quick look

A connection costs the load balancer two descriptors (client and backend), so 9,900 fit
under a 20,000 open-file limit with room for its listeners, probes and reactor. The script
raises its soft limit to the hard one; the processes it starts inherit it. Exit status 0
when every connection was held and verified, 1 otherwise, 2 for a usage error.
"""

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def payload(i, size):
    head = f"conn {i:06d} ".encode()
    body = bytes((i * 7 + k) % 251 for k in range(max(0, size - len(head))))
    return (head + body)[:size]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    ap.add_argument("--lb", default=os.path.join(target, "release", "loadbalancer"))
    ap.add_argument("--server", default=os.path.join(target, "release", "server"))
    ap.add_argument("--conns", type=int, default=9900)
    ap.add_argument("--payload", type=int, default=1024, help="bytes sent and echoed per connection")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("LB_HOLD_PORT_BASE", "18600")))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for opening and for verifying")
    a = ap.parse_args()
    for path in (a.lb, a.server):
        if not os.access(path, os.X_OK):
            print(f"no executable {path}: cargo build --release -p lb-runtime --bins", file=sys.stderr)
            return 2
    if a.conns < 1 or a.payload < 16:
        print("--conns must be at least 1 and --payload at least 16", file=sys.stderr)
        return 2

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = 2 * a.conns + 64
    if need > limit:
        print(f"{a.conns} connections need about {need} descriptors in the load balancer; "
              f"the open-file limit is {limit}", file=sys.stderr)
        return 2

    lb_port, backends = a.port_base, [a.port_base + 1, a.port_base + 2]
    tmp = tempfile.mkdtemp(prefix="lb-hold.")
    procs = []
    socks = []
    try:
        for port in backends:
            p = subprocess.Popen([a.server, "--echo", str(port)], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(tmp, f"server-{port}.log"), "w"))
            procs.append(p)
            wait_port(port, p)
        config = {
            "listen": f"127.0.0.1:{lb_port}",
            "max_connections": a.conns + 16,
            "backends": [{"name": f"echo-{p}", "address": f"127.0.0.1:{p}"} for p in backends],
            "health_check": {"type": "tcp", "interval": "1s", "timeout": "500ms"},
            "timeouts": {"connect": "1s", "idle": "5m"},
        }
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        lb_log = os.path.join(tmp, "lb.log")
        env = dict(os.environ, RUST_LOG="warn")
        lb = subprocess.Popen([a.lb, "--config", cfg], stdout=subprocess.DEVNULL,
                              stderr=open(lb_log, "w"), env=env)
        procs.append(lb)
        wait_port(lb_port, lb)
        time.sleep(2.5)  # two passing checks bring both backends up
        rss0 = rss(lb.pid)

        log(f"opening {a.conns} connections through 127.0.0.1:{lb_port}")
        end = time.monotonic() + a.timeout
        for i in range(a.conns):
            if time.monotonic() > end:
                break
            s = socket.create_connection(("127.0.0.1", lb_port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        held = len(socks)
        # Every client has a backend connection of its own once the load balancer holds
        # two descriptors per client.
        while time.monotonic() < end and fds(lb.pid) < 2 * held:
            time.sleep(0.1)
        lb_fds, rss1 = fds(lb.pid), rss(lb.pid)
        log(f"{held} open; the load balancer holds {lb_fds} descriptors, RSS +{rss1 - rss0} B")

        log(f"sending {a.payload} B on each and checking the echo, all {held} still open")
        sel = selectors.DefaultSelector()
        want, got, sent = {}, {}, {}
        for i, s in enumerate(socks):
            want[i] = payload(i, a.payload)
            got[i] = bytearray()
            sent[i] = 0
            sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, i)
        verified, failed = 0, []
        end = time.monotonic() + a.timeout
        pending = set(range(held))
        while pending and time.monotonic() < end:
            for key, ev in sel.select(timeout=1.0):
                i, s = key.data, key.fileobj
                try:
                    if ev & selectors.EVENT_WRITE and sent[i] < len(want[i]):
                        sent[i] += s.send(want[i][sent[i]:])
                        if sent[i] == len(want[i]):
                            sel.modify(s, selectors.EVENT_READ, i)
                    if ev & selectors.EVENT_READ:
                        data = s.recv(65536)
                        if not data:
                            raise ConnectionError("closed before its echo")
                        got[i] += data
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    failed.append((i, str(e)))
                    sel.unregister(s)
                    pending.discard(i)
                    continue
                if len(got[i]) >= len(want[i]):
                    if bytes(got[i]) == want[i]:
                        verified += 1
                    else:
                        failed.append((i, "echo differs"))
                    sel.unregister(s)
                    pending.discard(i)
        failed += [(i, "no echo in time") for i in sorted(pending)]
        still_open = fds(lb.pid)
        log(f"verified {verified} of {held}; the load balancer still holds {still_open} descriptors")

        per_conn = (rss1 - rss0) / held if held else 0
        print(f"connections requested   {a.conns}")
        print(f"held at once            {held}")
        print(f"verified byte-exact     {verified}  ({a.payload} B each way)")
        print(f"failed                  {len(failed)}" + (f"  first: {failed[:3]}" if failed else ""))
        print(f"load balancer fds       {lb_fds} while held (limit {limit})")
        print(f"load balancer RSS       +{rss1 - rss0} B, {per_conn:,.0f} B per connection")
        with open(lb_log) as f:
            warnings = [line.strip() for line in f if "level=warn" in line or "level=error" in line]
        if warnings:
            print(f"load balancer warnings  {len(warnings)}, first: {warnings[0]}")
        return 0 if verified == a.conns and not failed else 1
    finally:
        for s in socks:
            s.close()
        stop(procs)


if __name__ == "__main__":
    T0 = time.monotonic()
    sys.exit(main())
