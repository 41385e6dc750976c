"""One consumer-group member as its own process, so a test can SIGKILL it like a crash.

Usage: group_member.py BOOTSTRAP GROUP TOPIC
Prints one JSON line per event: {"assigned": [partitions]} after each rebalance, and
{"p": partition, "v": value} for each record, printed only after its offset is committed.
SIGTERM closes the consumer cleanly (LeaveGroup); SIGKILL is a crash.
"""

import json
import signal
import sys

from confluent_kafka import Consumer

bootstrap, group, topic = sys.argv[1:4]
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)


def emit(obj):
    print(json.dumps(obj), flush=True)


def on_assign(consumer, partitions):
    emit({"assigned": sorted(p.partition for p in partitions)})


c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 3000,
    "heartbeat.interval.ms": 300,
    "fetch.wait.max.ms": 100,
})
c.subscribe([topic], on_assign=on_assign, on_revoke=lambda cons, parts: emit({"revoked": True}))
while running:
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    c.commit(message=m, asynchronous=False)
    emit({"p": m.partition(), "v": m.value().decode()})
c.close()
emit({"closed": True})
