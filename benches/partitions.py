#!/usr/bin/env python3
"""One broker holding many partitions (not run by the test command): the issue's 50,000-partition
goals, each printed as measured.

1. CreateTopics of PARTITIONS partitions (topics of PER_TOPIC each) and its time,
2. RSS and memory maps of the idle broker (against vm.max_map_count),
3. one record to each partition through librdkafka (confluent-kafka), acks=1, and its time,
4. clean shutdown (SIGTERM to exit), restart to serving after it and after kill -9.

Usage: benches/partitions.py [--bin target/release/runnel] [--partitions 50000] [--per-topic 1000]
Every wait is bounded; the broker is killed at the end."""

import argparse
import resource
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import runnel_proc
from runnel_proc import cpu_seconds, free_port, ready


def spawn(binary, data, port):
    return runnel_proc.spawn(binary, ["--listen", f"127.0.0.1:{port}", "--data", data,
                                      "--set", "metrics.listeners="])


def serving(port, topic, deadline):
    """Seconds until Metadata for `topic` names a leader for partition 0."""
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
    while time.monotonic() < deadline:
        try:
            t = admin.list_topics(topic, timeout=2).topics.get(topic)
            if t is not None and t.error is None and t.partitions and t.partitions[0].leader >= 0:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError("broker did not serve in time")


def rss_and_maps(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
    with open(f"/proc/{pid}/maps") as f:
        maps = sum(1 for _ in f)
    return rss / 1024, maps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--partitions", type=int, default=50000)
    ap.add_argument("--per-topic", type=int, default=1000)
    args = ap.parse_args()
    with open("/proc/sys/vm/max_map_count") as f:
        max_maps = int(f.read())
    with tempfile.TemporaryDirectory() as d:
        data, port = f"{d}/data", free_port()
        proc = spawn(args.bin, data, port)
        ready(proc)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        names = [f"p-{i}" for i in range(args.partitions // args.per_topic)]
        t0 = time.monotonic()
        for batch in range(0, len(names), 10):
            topics = [NewTopic(n, num_partitions=args.per_topic, replication_factor=1)
                      for n in names[batch:batch + 10]]
            for f in admin.create_topics(topics, operation_timeout=120).values():
                f.result(timeout=180)
        created = time.monotonic() - t0
        total = len(names) * args.per_topic
        rss, maps = rss_and_maps(proc.pid)
        print(f"create {total} partitions: {created:.1f} s; idle RSS {rss:.0f} MB, "
              f"{maps} memory maps (vm.max_map_count {max_maps})")

        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": 1,
                             "linger.ms": 5, "queue.buffering.max.messages": 1000000})
        t0, broker0 = time.monotonic(), cpu_seconds(proc.pid)
        client0 = resource.getrusage(resource.RUSAGE_SELF)
        for n in names:
            for p in range(args.per_topic):
                while True:
                    try:
                        producer.produce(n, value=b"x" * 100, partition=p)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
        left = producer.flush(300)
        wrote = time.monotonic() - t0
        assert left == 0, f"{left} records not delivered"
        client1 = resource.getrusage(resource.RUSAGE_SELF)
        client = client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime
        rss, maps = rss_and_maps(proc.pid)
        print(f"one record to each partition: {wrote:.1f} s ({total / wrote:,.0f} rec/s), "
              f"broker CPU {cpu_seconds(proc.pid) - broker0:.1f} s, client (librdkafka) CPU "
              f"{client:.1f} s; RSS {rss:.0f} MB, {maps} maps")
        del producer, admin

        t0 = time.monotonic()
        proc.terminate()
        proc.wait(timeout=300)
        print(f"clean shutdown: {time.monotonic() - t0:.2f} s")
        for how in ("clean", "kill -9"):
            t0 = time.monotonic()
            proc = spawn(args.bin, data, port)
            ready(proc)
            serving(port, names[-1], time.monotonic() + 300)
            print(f"restart after {how} shutdown to serving: {time.monotonic() - t0:.2f} s")
            if how == "clean":
                time.sleep(1)
                proc.kill()
                proc.wait(timeout=60)
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
