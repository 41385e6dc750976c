#!/usr/bin/env python3
"""Cluster benchmarks on loopback (not run by the test command):

1. kill -9 of the quorum leader → a new leader reported by a survivor (DescribeQuorum),
2. CreateTopics round trip on three nodes (confluent-kafka AdminClient, one topic a request),
3. restart → serving of one node holding PARTITIONS partitions (clean and after kill -9),
4. ElectLeaders (PREFERRED, every partition) giving ELECT partitions back to a restarted node.

Usage: benches/cluster.py [--bin target/release/runnel] [--partitions 10000] [--reps 5]
                          [--elect 3000]
Every wait is bounded; the brokers are killed at the end."""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import ElectionType
from confluent_kafka.admin import AdminClient, NewTopic

import runnel_proc
from runnel_proc import free_port, ready


def spawn(binary, data, node_id, client, controller, voters):
    args = ["--data", data, "--set", f"node.id={node_id}"]
    if voters:
        args += ["--set", f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
                 "--set", f"controller.quorum.voters={voters}"]
    else:
        args += ["--listen", f"127.0.0.1:{client}"]
    return runnel_proc.spawn(binary, args)


def quorum_leader(binary, client):
    out = subprocess.run([binary, "cluster", "status", "--json", "-b", f"127.0.0.1:{client}"],
                         capture_output=True, text=True, timeout=5)
    if out.returncode != 0:
        return None
    import json
    return json.loads(out.stdout)["leader_id"]


def election(binary, reps):
    times = []
    with tempfile.TemporaryDirectory() as d:
        ports = [(free_port(), free_port()) for _ in range(3)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        procs = {}
        for i, (p, c) in enumerate(ports):
            procs[i + 1] = spawn(binary, f"{d}/n{i + 1}", i + 1, p, c, voters)
        for p in procs.values():
            ready(p)
        for _ in range(reps):
            leader = quorum_leader(binary, ports[0][0])
            assert leader, "no leader"
            survivor = next(ports[i - 1][0] for i in procs if i != leader)
            procs[leader].kill()
            procs[leader].wait()
            start = time.monotonic()
            while time.monotonic() - start < 30:
                now = quorum_leader(binary, survivor)
                if now and now != leader:
                    break
                time.sleep(0.02)
            times.append(time.monotonic() - start)
            p, c = ports[leader - 1]
            procs[leader] = spawn(binary, f"{d}/n{leader}", leader, p, c, voters)
            ready(procs[leader])
            time.sleep(3)
        # CreateTopics round trips through a broker that is not the controller.
        leader = quorum_leader(binary, ports[0][0])
        other = next(ports[i - 1][0] for i in procs if i != leader)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{other}"})
        rtts = []
        for i in range(30):
            t0 = time.monotonic()
            admin.create_topics([NewTopic(f"bench-{i}", num_partitions=3, replication_factor=1)])[
                f"bench-{i}"].result(timeout=30)
            rtts.append(time.monotonic() - t0)
        for p in procs.values():
            p.kill()
            p.wait()
    return times, rtts


def restart(binary, partitions):
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        proc = spawn(binary, f"{d}/n", 1, port, None, None)
        ready(proc)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        per_topic = 100
        topics = [NewTopic(f"p-{i}", num_partitions=per_topic, replication_factor=1)
                  for i in range(partitions // per_topic)]
        for batch in range(0, len(topics), 20):
            for f in admin.create_topics(topics[batch:batch + 20], operation_timeout=60).values():
                f.result(timeout=120)
        results = {}
        for how in ("clean", "kill -9"):
            if how == "clean":
                proc.terminate()
            else:
                proc.kill()
            proc.wait(timeout=120)
            t0 = time.monotonic()
            proc = spawn(binary, f"{d}/n", 1, port, None, None)
            ready(proc)
            results[how] = time.monotonic() - t0
        proc.kill()
        proc.wait()
    return results


def preferred(binary, partitions):
    """Seconds for one ElectLeaders (PREFERRED, all partitions) that moves a third of
    `partitions` RF=3 partitions back to a node restarted after a controlled shutdown."""
    with tempfile.TemporaryDirectory() as d:
        ports = [(free_port(), free_port()) for _ in range(3)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        procs = {i + 1: spawn(binary, f"{d}/n{i + 1}", i + 1, p, c, voters)
                 for i, (p, c) in enumerate(ports)}
        for p in procs.values():
            ready(p)
        bootstrap = ",".join(f"127.0.0.1:{p}" for p, _ in ports)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("elect", num_partitions=partitions, replication_factor=3)],
                            operation_timeout=120)["elect"].result(timeout=180)
        procs[1].terminate()
        procs[1].wait(timeout=60)
        procs[1] = spawn(binary, f"{d}/n1", 1, ports[0][0], ports[0][1], voters)
        ready(procs[1])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            parts = admin.list_topics("elect", timeout=30).topics["elect"].partitions.values()
            if all(len(p.isrs) == 3 for p in parts):
                break
            time.sleep(0.5)
        t0 = time.monotonic()
        result = admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=120)
        took = time.monotonic() - t0
        # Asked for every partition, the answer lists those an election was needed for.
        moved = sum(1 for e in result.values() if e is None)
        for p in procs.values():
            p.kill()
            p.wait()
    return moved, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--elect", type=int, default=3000)
    a = ap.parse_args()
    moved, took = preferred(a.bin, a.elect)
    print(f"ElectLeaders PREFERRED: {moved} of {a.elect} partitions back to their preferred "
          f"leader in {took:.2f} s")
    times, rtts = election(a.bin, a.reps)
    print(f"leader kill -9 -> new leader: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)}")
    print(f"CreateTopics round trip (3 nodes, via a non-controller): median "
          f"{statistics.median(rtts) * 1000:.1f} ms, p90 {sorted(rtts)[int(len(rtts) * 0.9)] * 1000:.1f} ms")
    r = restart(a.bin, a.partitions)
    print(f"restart to serving with {a.partitions} partitions: clean {r['clean']:.2f} s, "
          f"after kill -9 {r['kill -9']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
