#!/usr/bin/env python3
"""standin-lb.py - HAProxy under the project's name, for `bench/run.sh --self-test`.

usage: standin-lb.py PORT --config FILE [--check]

Reads the config bench/lb_bench.py writes for the project (`listeners` + `pools`, round robin,
TCP checks), writes the equivalent HAProxy configuration to FILE.haproxy.cfg and execs HAProxy
in the foreground (nbthread 2), so the PID run.sh started is the proxy. In a self-test run the
`project` column is HAProxy measured a second time: its ratios to `haproxy` should be 1 within
the noise of the machine, which is what the self-test checks (and a measure of that noise).
"""
import json
import os
import subprocess
import sys

HAPROXY = os.environ.get("HAPROXY", "/usr/sbin/haproxy")


def main(argv):
    path, check = None, False
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            path = next(it, None)
        elif arg == "--check":
            check = True
        elif not arg.isdigit():
            sys.exit(f"standin-lb: unsupported argument {arg!r}")
    if not path:
        sys.exit("standin-lb: --config FILE is required")
    with open(path) as f:
        cfg = json.load(f)
    t = cfg.get("timeouts", {})
    maxconn = max(ls.get("max_connections", 10000) for ls in cfg["listeners"])
    out = ["global", "    nbthread 2", f"    maxconn {maxconn}", "", "defaults", "    mode tcp",
           f"    maxconn {maxconn}", f"    timeout connect {t.get('connect', '1s')}",
           f"    timeout client {t.get('idle', '5m')}", f"    timeout server {t.get('idle', '5m')}",
           "    timeout check 500ms", "    retries 2", "    option redispatch", ""]
    for ls in cfg["listeners"]:
        pool = cfg["pools"][ls["pool"]]
        hc = pool.get("health_check", {})
        out += [f"frontend {ls['name']}", f"    bind {ls['listen']}", f"    maxconn {ls.get('max_connections', maxconn)}",
                f"    default_backend {ls['pool']}", "", f"backend {ls['pool']}", "    balance roundrobin",
                f"    default-server check inter {hc.get('interval', '1s')} rise {hc.get('rise', 2)} fall {hc.get('fall', 2)}"]
        out += [f"    server {b.get('name', 'b%d' % i)} {b['address']}" for i, b in enumerate(pool["backends"])]
        out.append("")
    hp = path + ".haproxy.cfg"
    with open(hp, "w") as f:
        f.write("\n".join(out))
    if check:
        p = subprocess.run([HAPROXY, "-c", "-q", "-f", hp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        print(p.stdout.strip() or "config ok")
        return p.returncode
    os.execv(HAPROXY, [HAPROXY, "-db", "-f", hp])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
