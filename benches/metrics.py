#!/usr/bin/env python3
"""What metrics cost producers (not run by the test command): ../shared/bench/kbench.py produce
(1M x 1 KiB, 6 partitions, acks=1) into a fresh broker, alternating between
  before:  a binary built without the metrics (--before, e.g. the parent commit's release build),
  off:     this binary with metrics.listeners= (counters still counted, no endpoint),
  scraped: this binary with the endpoint on and /metrics scraped twice a second during the run.
Prints each run's records/s and broker CPU seconds, then the medians and ratios to `before`.

Usage: benches/metrics.py --before /tmp/runnel-before [--bin target/release/runnel]
       [--kbench ../shared/bench/kbench.py] [--reps 5]
Every wait is bounded; each broker is stopped after its run."""

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import urllib.request

from runnel_proc import free_port, ready, spawn


RECORDS = 1_000_000


def run(binary, kbench, settings, scrape):
    port = free_port()
    mport = free_port()
    with tempfile.TemporaryDirectory() as data:
        args = ["--listen", f"127.0.0.1:{port}", "--data", data,
                "--set", f"metrics.listeners={'http://127.0.0.1:%d' % mport if scrape else ''}"]
        for s in settings:
            args += ["--set", s]
        proc = spawn(binary, args, log="warn")
        try:
            ready(proc)
            stop = threading.Event()
            scrapes = []

            def scraper():
                while not stop.wait(0.5):
                    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
                        scrapes.append(len(r.read()))

            t = threading.Thread(target=scraper, daemon=True)
            if scrape:
                t.start()
            out = subprocess.run(
                ["python3", kbench, "--bootstrap", f"127.0.0.1:{port}", "--topic", "m",
                 "--partitions", "6", "--records", str(RECORDS), "--size", "1024", "--acks", "1",
                 "--mode", "produce", "--broker-pid", str(proc.pid), "--timeout-s", "120",
                 "--quiet"],
                capture_output=True, text=True, timeout=180)
            stop.set()
            if scrape:
                t.join(timeout=10)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            return r["records_per_s"], r.get("broker_cpu_s"), len(scrapes)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--kbench", default="../shared/bench/kbench.py")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    configs = [("before", a.before, False), ("off", a.bin, False), ("scraped", a.bin, True)]
    results = {name: [] for name, _, _ in configs}
    for rep in range(a.reps):
        for name, binary, scrape in configs:
            rate, cpu, scrapes = run(binary, a.kbench, [], scrape)
            results[name].append((rate, cpu))
            print(f"rep {rep} {name:8} {rate:10.0f} rec/s  broker cpu {cpu} s  scrapes {scrapes}",
                  flush=True)
    base = statistics.median(r for r, _ in results["before"])
    for name, _, _ in configs:
        rate = statistics.median(r for r, _ in results[name])
        cpu = statistics.median(c for _, c in results[name] if c is not None)
        print(f"{name:8} median {rate:10.0f} rec/s ({rate / base:.3f} of before), "
              f"broker cpu {cpu:.2f} s")


if __name__ == "__main__":
    main()
