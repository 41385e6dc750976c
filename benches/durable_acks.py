#!/usr/bin/env python3
"""Durable acks (not run by the test command): produce throughput with
`log.flush.interval.messages=1` (Kafka's flush.messages=1: acks=1 and acks=all answer only once
the records are fsynced) against the same broker without it, with ../shared/bench/kbench.py
(confluent-kafka), 1 KiB records into 6 partitions, runs interleaved. Prints each run and the
median ratio durable / page cache (issue goal: at least 0.8).

Usage: benches/durable_acks.py [--bin target/release/runnel] [--kbench ../shared/bench/kbench.py]
  [--reps 3] [--records 200000] [--producers 1]
Every wait is bounded; each broker is killed after its run."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from runnel_proc import serve

HERE = os.path.dirname(os.path.abspath(__file__))


def run(binary, kbench, durable, args):
    with tempfile.TemporaryDirectory(dir=args.data_root) as data:
        settings = ["log.flush.interval.messages=1"] if durable else []
        proc, bootstrap = serve(binary, data, settings)
        try:
            out = subprocess.run(
                [sys.executable, kbench, "--bootstrap", bootstrap, "--quiet", "--topic", "d",
                 "--partitions", "6", "--records", str(args.records), "--size", "1024",
                 "--acks", args.acks, "--producers", str(args.producers),
                 "--broker-pid", str(proc.pid), "--timeout-s", "300"],
                capture_output=True, text=True, timeout=400)
            return json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "runnel"))
    ap.add_argument("--kbench", default=os.path.join(HERE, "..", "..", "shared", "bench",
                                                     "kbench.py"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--producers", type=int, default=1)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--data-root", default=None, help="where the brokers' data directories go")
    args = ap.parse_args()
    rates = {False: [], True: []}
    for rep in range(args.reps):
        for durable in (False, True):
            r = run(args.bin, args.kbench, durable, args)
            rate = r.get("records_per_s") or 0
            rates[durable].append(rate)
            print(f"rep {rep} {'durable' if durable else 'page cache'}: {rate:,.0f} rec/s, "
                  f"broker CPU {r.get('broker_cpu_s')} s", flush=True)
    plain, durable = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"median: page cache {plain:,.0f} rec/s, durable {durable:,.0f} rec/s, "
          f"ratio {durable / plain:.2f}")


if __name__ == "__main__":
    main()
