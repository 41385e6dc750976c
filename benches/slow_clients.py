#!/usr/bin/env python3
"""A well-behaved producer's latency beside clients that do nothing useful (not run by the
test command): issue 15's goal, p99 unchanged within 20% while 1,000 idle connections and a
stuck consumer are present.

1. Baseline: a librdkafka (confluent-kafka) producer at RATE records a second, acks=1, linger 0,
   1 KiB records, for SECONDS; latency from produce() to its delivery report.
2. The same with IDLE connections open and idle, and a stuck consumer: fetches of ~900 KB
   pipelined on one connection whose answers it never reads.
3. The same again after they are gone. Broker RSS is printed at each stage.

Usage: benches/slow_clients.py [--bin target/release/runnel] [--idle 1000] [--seconds 30]
(shorter stages leave p99 to this VM's noise: 10-15 s stages moved it 0.2-0.7 ms in every stage)
Every wait is bounded; the broker is stopped at the end."""

import argparse
import resource
import socket
import struct
import subprocess
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_proc import rss_mib, serve


def measure(bootstrap, rate, seconds):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1})
    latencies = []
    value = b"x" * 1024
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * interval
        while (now := time.monotonic()) < due:
            p.poll(due - now)
        sent = time.monotonic()
        p.produce("latency", value=value, partition=0,
                  on_delivery=lambda err, msg, sent=sent: latencies.append(
                      time.monotonic() - sent if err is None else float("inf")))
        p.poll(0)
        n += 1
    p.flush(30)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000  # noqa: E731
    return len(latencies), pick(0.5), pick(0.99), pick(0.999)


def fetch_frame(correlation_id):
    """Fetch v4 of topic `stuck` partition 0 from offset 0, up to 4 MiB, no wait."""
    topic = b"stuck"
    body = struct.pack(">iiiib", -1, 0, 1, 4 << 20, 0)
    body += struct.pack(">ih", 1, len(topic)) + topic
    body += struct.pack(">iiqi", 1, 0, 0, 4 << 20)
    client = b"stuck"
    header = struct.pack(">hhih", 1, 4, correlation_id, len(client)) + client
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/runnel")
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--stuck", type=int, default=1, help="stuck consumers")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.idle + 4096), hard))
    with tempfile.TemporaryDirectory() as d:
        broker, bootstrap = serve(args.bin, d, [f"max.connections={args.idle + 1000}"])
        try:
            host, port = bootstrap.rsplit(":", 1)
            admin = AdminClient({"bootstrap.servers": bootstrap})
            for f in admin.create_topics([NewTopic("latency", 1, 1), NewTopic("stuck", 1, 1)]).values():
                f.result(timeout=30)
            p = Producer({"bootstrap.servers": bootstrap})
            p.produce("stuck", value=b"s" * 900_000, partition=0)
            assert p.flush(30) == 0

            def report(stage):
                n, p50, p99, p999 = measure(bootstrap, args.rate, args.seconds)
                print(f"{stage}: {n} records at {args.rate}/s, latency p50 {p50:.2f} ms, "
                      f"p99 {p99:.2f} ms, p99.9 {p999:.2f} ms; broker RSS "
                      f"{rss_mib(broker.pid):.0f} MiB", flush=True)
                return p99

            base = report("baseline")
            idle = [socket.create_connection((host, int(port)), timeout=10)
                    for _ in range(args.idle)]
            stuck = [socket.create_connection((host, int(port)), timeout=10)
                     for _ in range(args.stuck)]
            for s in stuck:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"".join(fetch_frame(i) for i in range(40)))
            time.sleep(1)
            # The broker's side of each connection: how many, and the stuck one's unsent bytes.
            rows = [l.split() for l in subprocess.run(
                ["ss", "-tnH", "state", "established", "sport", f"= :{port}"],
                capture_output=True, text=True).stdout.splitlines()]
            print(f"broker side: {len(rows)} connections, largest send queue "
                  f"{max((int(r[1]) for r in rows), default=0)} bytes", flush=True)
            loaded = report(f"{args.idle} idle connections and {args.stuck} stuck consumers")
            for s in idle + stuck:
                s.close()
            time.sleep(1)
            report("after they close")
            print(f"p99 with them / baseline: {loaded / base:.2f}")
        finally:
            broker.terminate()
            broker.wait(timeout=30)


if __name__ == "__main__":
    main()
