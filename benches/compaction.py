#!/usr/bin/env python3
"""Log compaction benchmark on one local broker (not run by the test command):

1. cleaning throughput: a compacted topic of KEYS keys each written ROUNDS times is produced with
   the cleaner off; the broker restarts with it on and cleans the whole dirty log; the figures
   are the cleaner's own ("log cleaned" lines: dirty MB, seconds, offset-map memory) and the
   broker's peak RSS (VmHWM) against log.cleaner.dedupe.buffer.size;
2. produce throughput of ../shared/bench/kbench.py (200k x 1 KiB, 6 partitions, acks=1) into an
   ordinary topic, run again and again while that cleaning runs (runs that end after it are
   not counted), against as many runs once the cleaner is idle (medians).

Usage: benches/compaction.py [--bin target/release/runnel] [--kbench ../shared/bench/kbench.py]
       [--keys 100000] [--rounds 20] [--value-bytes 1000] [--dedupe-mb 128] [--io-max-mb N]
Every wait is bounded; the broker is killed at the end."""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_proc import free_port, ready, spawn


class Broker:
    def __init__(self, binary, data, port, log_path, settings):
        self.binary = binary
        self.args = ["--listen", f"127.0.0.1:{port}", "--data", data]
        for s in settings:
            self.args += ["--set", s]
        self.addr = f"127.0.0.1:{port}"
        self.log_path = log_path
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = spawn(self.binary, self.args, log="info,openraft=off", stderr=self.log)
        ready(self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None


def produce_changelog(addr, topic, keys, rounds, value_bytes):
    p = Producer({"bootstrap.servers": addr, "linger.ms": 20, "batch.size": 1 << 20,
                  "queue.buffering.max.messages": 1_000_000, "compression.type": "none"})
    failed = [0]

    def report(err, _):
        if err:
            failed[0] += 1

    pad = b"v" * max(0, value_bytes - 8)
    for r in range(rounds):
        for k in range(keys):
            while True:
                try:
                    p.produce(topic, key=b"key-%08d" % k, value=b"%08d" % r + pad, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
    assert p.flush(120) == 0 and failed[0] == 0, "produce failed"


def kbench(path, addr, topic, broker_pid):
    """One kbench produce run into a fresh topic, deleted afterwards: no run pays for the
    page-cache writeback of the ones before."""
    admin = AdminClient({"bootstrap.servers": addr})
    topic = f"{topic}-{time.monotonic_ns()}"
    out = subprocess.run([sys.executable, path, "--bootstrap", addr, "--topic", topic, "--partitions", "6",
                          "--records", "200000", "--size", "1024", "--acks", "1", "--mode", "produce",
                          "--broker-pid", str(broker_pid), "--timeout-s", "120", "--quiet"],
                         capture_output=True, text=True, timeout=180)
    admin.delete_topics([topic])[topic].result(30)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cleaned_lines(log_path):
    with open(log_path) as f:
        return [line for line in f if "log cleaned" in line and "topic=cdc" in line]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--kbench", default="../shared/bench/kbench.py")
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--value-bytes", type=int, default=1000)
    ap.add_argument("--dedupe-mb", type=int, default=128)
    ap.add_argument("--io-max-mb", type=float, default=0, help="log.cleaner.io.max.bytes.per.second in MB (0: unlimited)")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="runnel-compaction-bench-")
    data, log_path, port = os.path.join(root, "data"), os.path.join(root, "broker.log"), free_port()
    common = [f"log.cleaner.dedupe.buffer.size={a.dedupe_mb << 20}", "log.cleaner.backoff.ms=200"]
    if a.io_max_mb:
        common.append(f"log.cleaner.io.max.bytes.per.second={int(a.io_max_mb * 1e6)}")
    broker = Broker(a.bin, data, port, log_path, common + ["log.cleaner.enable=false"])
    try:
        broker.start()
        admin = AdminClient({"bootstrap.servers": broker.addr})
        for f in admin.create_topics(
                [NewTopic("cdc", 1, 1, config={"cleanup.policy": "compact", "segment.bytes": str(64 << 20)})]).values():
            f.result(30)
        started = time.time()
        produce_changelog(broker.addr, "cdc", a.keys, a.rounds, a.value_bytes)
        print(f"produced {a.keys * a.rounds} records in {time.time() - started:.1f} s", file=sys.stderr)
        broker.stop()
        broker = Broker(a.bin, data, port, log_path, common + ["log.cleaner.enable=true"])
        broker.start()
        during = []
        deadline = time.time() + 600
        while time.time() < deadline and not cleaned_lines(log_path):
            r = kbench(a.kbench, broker.addr, "plain", broker.proc.pid)
            if not cleaned_lines(log_path):
                during.append(r["records_per_s"])
        peak_cleaning = broker.peak_rss_mb()
        after = [kbench(a.kbench, broker.addr, "plain", broker.proc.pid)["records_per_s"]
                 for _ in range(max(3, len(during)))]
        lines = cleaned_lines(log_path)
        fields = dict(re.findall(r'(\w+)="?([\w.]+)"?', lines[0])) if lines else {}
        result = {
            "keys": a.keys, "rounds": a.rounds, "value_bytes": a.value_bytes, "dedupe_mb": a.dedupe_mb,
            "io_max_mb": a.io_max_mb or "unlimited",
            "cleaning": fields, "broker_peak_rss_mb": peak_cleaning,
            "produce_runs_while_cleaning": len(during),
            "produce_rec_per_s_while_cleaning": statistics.median(during) if during else None,
            "produce_rec_per_s_idle": statistics.median(after),
        }
        if during:
            result["produce_ratio"] = round(statistics.median(during) / statistics.median(after), 3)
        print(json.dumps(result))
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
