"""Unit tests of bench/lb_bench.py's report: what it says about a run's noise.

Run with `python3 -m unittest discover -s bench -p 'test_*.py'` (standard library only,
no servers, a second); CI runs it.
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "lb_bench.py")


def record(system, rnd, steal=0.0, others=0.0):
    return {"system": system, "workload": "iperf", "round": rnd, "ok": True,
            "mib_per_s": 1000.0, "cpu_us_per_mib": 800.0, "error_total": 0,
            "others_pct": others, "steal_pct": steal, "irq_pct": 20.0}


def report(records):
    """The text report of `lb_bench.py report` over these per-round records."""
    with tempfile.TemporaryDirectory() as d:
        res = os.path.join(d, "res")
        os.mkdir(res)
        for r in records:
            with open(os.path.join(res, f"{r['system']}.{r['workload']}.{r['round']}.json"), "w") as f:
                json.dump(r, f)
        meta = {"host": "test", "cpus": 2, "date": "-", "rounds": 2, "seconds": 1, "idle_conns": 10,
                "systems": ["haproxy", "project"], "workloads": ["iperf"], "notes": []}
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f)
        p = subprocess.run([sys.executable, LIB, "report", "--dir", res, "--meta", os.path.join(d, "meta.json")],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise AssertionError(f"report failed: {p.stderr}")
        return p.stdout


def verdict(text):
    return next(line.split("verdict:", 1)[1].strip() for line in text.splitlines() if "verdict:" in line)


def cells(text, workload="iperf"):
    return next(line for line in text.splitlines() if line.startswith(workload))


class Noise(unittest.TestCase):
    def test_a_quiet_run_is_called_quiet(self):
        text = report([record(s, k) for s in ("haproxy", "project") for k in (1, 2)])
        self.assertEqual(verdict(text), "quiet")
        self.assertNotIn("~", cells(text))
        self.assertNotIn("steal >=", text)

    def test_rounds_the_hypervisor_took_are_flagged(self):
        # run 2 of 2026-12-01: 15-42% steal in every iperf round, reported as "quiet"
        recs = [record(s, k) for s in ("haproxy", "project") for k in (1, 2)]
        recs[2]["steal_pct"] = 23.0
        text = report(recs)
        self.assertNotEqual(verdict(text), "quiet")
        self.assertIn("~", cells(text))
        self.assertIn("steal >= 10% in 1 of 4 rounds (iperf 1)", text)

    def test_steal_in_most_rounds_makes_the_run_noisy(self):
        text = report([record(s, k, steal=30.0) for s in ("haproxy", "project") for k in (1, 2)])
        self.assertTrue(verdict(text).startswith("NOISY"), verdict(text))

    def test_other_load_still_counts(self):
        text = report([record(s, k, others=25.0) for s in ("haproxy", "project") for k in (1, 2)])
        self.assertTrue(verdict(text).startswith("NOISY"), verdict(text))
        self.assertIn("~", cells(text))


if __name__ == "__main__":
    unittest.main()
