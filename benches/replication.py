#!/usr/bin/env python3
"""Replication benchmarks on three local brokers (not run by the test command):

1. produce throughput and the brokers' CPU seconds per GB: acks=1 on RF=1 against acks=all on
   RF=3 (min.insync.replicas=2), with ../shared/bench/kbench.py (confluent-kafka);
2. produce latency at a fixed rate with acks=all on RF=3;
3. kill -9 of a partition leader → the first acknowledged acks=all produce to that partition,
   and the same after a controlled shutdown (SIGTERM).

Usage: benches/replication.py [--bin target/release/runnel] [--kbench ../shared/bench/kbench.py]
Every wait is bounded; the brokers are killed at the end."""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_proc import cpu_seconds, free_port, ready, spawn


class Node:
    def __init__(self, binary, root, node_id, voters, client, controller):
        self.id, self.client, self.binary = node_id, client, binary
        self.args = ["--data", os.path.join(root, f"n{node_id}"),
                     "--set", f"node.id={node_id}",
                     "--set", f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                     "--set", f"controller.quorum.voters={voters}"]
        self.proc = None

    def start(self):
        self.proc = spawn(self.binary, self.args)

    def wait_ready(self):
        ready(self.proc)

    def cpu_s(self):
        return cpu_seconds(self.proc.pid)

    def io(self):
        with open(f"/proc/{self.proc.pid}/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}

    def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def kbench(path, bootstrap, *args):
    out = subprocess.run([sys.executable, path, "--bootstrap", bootstrap, "--quiet", *args],
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def leader_of(admin, topic, partition):
    md = admin.list_topics(topic, timeout=5)
    return md.topics[topic].partitions[partition].leader


def failover(nodes, bootstrap, topic, sig):
    """The longest time partition 0 acknowledged nothing while a producer sent to it every 5 ms
    and its leader was stopped (kill -9, or SIGTERM and its controlled shutdown)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    leader = leader_of(admin, topic, 0)
    victim = next(n for n in nodes if n.id == leader)
    others = ",".join(f"127.0.0.1:{n.client}" for n in nodes if n is not victim)
    p = Producer({"bootstrap.servers": others, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 0, "message.timeout.ms": 60000})
    p.produce(topic, b"warm", partition=0)
    p.flush(10)
    acks, errors = [], []

    def delivered(err, _msg):
        (errors.append(err) if err else acks.append(time.monotonic()))

    start = time.monotonic()
    victim.proc.send_signal(sig)
    while time.monotonic() - start < 60:
        p.produce(topic, b"x", partition=0, on_delivery=delivered)
        p.poll(0.005)
        # Done once the victim is gone and the new leader has acknowledged for a second.
        if victim.proc.poll() is not None and acks and acks[-1] - start > 1 and \
                len([t for t in acks if t > acks[-1] - 1]) > 10:
            break
    p.flush(30)
    assert not errors, errors[:3]
    victim.stop(sig)
    times = [start] + [t for t in acks if t >= start]
    victim.start()
    victim.wait_ready()
    return max(b - a for a, b in zip(times, times[1:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--kbench", default="../shared/bench/kbench.py")
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--parts", default="throughput,latency,failover")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="runnel-repl-bench-")
    ports = [(free_port(), free_port()) for _ in range(3)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    nodes = [Node(a.bin, root, i + 1, voters, cl, c) for i, (cl, c) in enumerate(ports)]
    bootstrap = ",".join(f"127.0.0.1:{n.client}" for n in nodes)
    results = {}
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        gb = a.records * a.size / 1e9
        admin = AdminClient({"bootstrap.servers": bootstrap})
        parts = a.parts.split(",")
        # Interleaved repetitions, medians reported: single runs on a shared 2-core machine
        # drift by 2x or more. Bytes each broker wrote and read (/proc/PID/io: write_bytes is
        # what reached the page cache for the disk, rchar what read() returned, here the
        # segment reads that answer followers) show replication's cost structure: one write per
        # replica and one read per follower.
        runs = {}
        for rep in range(a.reps if "throughput" in parts else 0):
            for label, rf, acks in [("rf1_acks1", 1, "1"), ("rf3_acksall", 3, "all")]:
                topic = f"{label}-{rep}"
                admin.create_topics([NewTopic(topic, 6, rf, config={
                    "min.insync.replicas": str(min(rf, 2))})])[topic].result(30)
                time.sleep(1)
                cpu0, io0 = [n.cpu_s() for n in nodes], [n.io() for n in nodes]
                r = kbench(a.kbench, bootstrap, "--topic", topic, "--partitions", "6",
                           "--replication-factor", str(rf), "--records", str(a.records),
                           "--size", str(a.size), "--acks", acks, "--timeout-s", "300")
                time.sleep(2)  # followers finish fetching what was acknowledged with acks=1
                cpu = sum(n.cpu_s() for n in nodes) - sum(cpu0)
                io = [{k: v - before[k] for k, v in n.io().items()} for n, before in zip(nodes, io0)]
                runs.setdefault(label, []).append({
                    "records_per_s": r.get("records_per_s"), "cpu_s_per_gb": cpu / gb,
                    "written_per_gb": sum(x["write_bytes"] for x in io) / 1e9 / gb,
                    "read_per_gb": sum(x["rchar"] for x in io) / 1e9 / gb})
        for label, rs in runs.items():
            results[label] = {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]}
            results[label]["cpu_s_per_gb_each"] = [round(r["cpu_s_per_gb"], 2) for r in rs]
        if runs:
            results["cpu_ratio_rf3_to_rf1"] = round(
                results["rf3_acksall"]["cpu_s_per_gb"] / results["rf1_acks1"]["cpu_s_per_gb"], 2)
        if "latency" in parts:
            # The matrix's latency run (../shared/bench/run_matrix.sh: 1 partition, 100 B,
            # linger.ms=0, 2000 rec/s), with acks=all on RF=3 beside acks=1 on RF=1. Topics are
            # created first: followers pick up a new partition at their next fetch (up to
            # replica.fetch.wait.max.ms later), which is not what this measures.
            for label, rf, acks in (("rf1_acks1", 1, "1"), ("rf3_acksall", 3, "all")):
                admin.create_topics([NewTopic(f"latency-{label}", 1, rf,
                                              config={"min.insync.replicas": str(min(rf, 2))})])[
                    f"latency-{label}"].result(30)
                time.sleep(2)
                lat = kbench(a.kbench, bootstrap, "--topic", f"latency-{label}",
                             "--partitions", "1", "--replication-factor", str(rf), "--acks", acks,
                             "--mode", "latency", "--linger-ms", "0", "--rate", "2000",
                             "--duration-s", "10", "--size", "100", "--timeout-s", "60")
                results[f"latency_{label}_2000rps"] = {k: v for k, v in lat.items() if "ms" in k}
        if "failover" not in parts:
            return print(json.dumps(results, indent=1))
        admin.create_topics(
            [NewTopic("failover", 1, 3, config={"min.insync.replicas": "2"})])[
            "failover"].result(30)
        time.sleep(1)
        results["failover_kill9_s"] = round(failover(nodes, bootstrap, "failover", signal.SIGKILL), 2)
        time.sleep(3)
        results["failover_sigterm_s"] = round(failover(nodes, bootstrap, "failover", signal.SIGTERM), 2)
    finally:
        for n in nodes:
            n.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
