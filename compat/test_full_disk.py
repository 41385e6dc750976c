"""A broker whose log directory fills up, through confluent-kafka (librdkafka): produce gets
KAFKA_STORAGE_ERROR, reads of what was acknowledged keep working, and writes resume by
themselves once space returns; librdkafka's own retries (KAFKA_STORAGE_ERROR is retriable)
carry a producer across the full spell. The data directory is a small tmpfs the test mounts
(needs root, as CI and the dev machines run)."""

import os
import subprocess
import tempfile
import threading
import time

import pytest
from conftest import FAST_GROUPS, Broker
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "filling"


@pytest.fixture
def tmpfs():
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", mnt], check=False)


def fill(path):
    """Writes to `path` until the file system has no byte left."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            for _ in range(100_000):
                f.write(chunk)
        except OSError:
            pass
        try:
            for _ in range(65536):
                f.write(b"\0")
        except OSError:
            return
    raise AssertionError("the disk never filled")


def produce(bootstrap, values, **config):
    """Produces `values` to partition 0; returns {value: error or None}."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **config})
    outcome = {}
    for v in values:
        p.produce(TOPIC, value=v, partition=0,
                  on_delivery=lambda err, msg, v=v: outcome.__setitem__(v, err))
        p.poll(0)
    assert p.flush(60) == 0
    return outcome


def read_all(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    _, end = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
    got, deadline = [], time.monotonic() + 30
    while len(got) < end and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def test_a_full_disk_refuses_produce_keeps_reads_and_recovers_by_itself(tmpfs):
    data = os.path.join(tmpfs, "data")
    broker = Broker(data, FAST_GROUPS)
    try:
        a = AdminClient({"bootstrap.servers": broker.bootstrap})
        a.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(timeout=20)
        filler = os.path.join(tmpfs, "filler")
        fill(filler)

        # Without retries, each refused record comes back with the broker's error.
        no_retries = {"acks": "all", "enable.idempotence": False, "retries": 0}
        values = [b"%d" % i + b"." * 4000 for i in range(64)]
        outcome = produce(broker.bootstrap, values, **no_retries)
        refused = [v for v, err in outcome.items() if err is not None]
        acked = [v for v in values if outcome[v] is None]
        assert refused, "some records must be refused on a full disk"
        assert {outcome[v].code() for v in refused} == {KafkaError.KAFKA_STORAGE_ERROR}

        # Reads of everything acknowledged keep working, and the broker answers metadata.
        assert read_all(broker.bootstrap) == acked
        assert TOPIC in a.list_topics(timeout=10).topics
        # The metadata quorum shares the file system and writes on: a topic created now
        # either is created (its empty files need no space) or fails with
        # KAFKA_STORAGE_ERROR and is rolled back; either way the broker stays registered.
        try:
            a.create_topics([NewTopic("made-while-full", 1, 1)])["made-while-full"].result(
                timeout=20)
        except Exception as e:
            assert e.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e
        assert read_all(broker.bootstrap) == acked

        # A producer with librdkafka's default retries keeps trying; space returns while it
        # does, and its records land with nothing lost, doubled or reordered.
        later = [b"later-%d" % i for i in range(20)]
        result = {}
        t = threading.Thread(target=lambda: result.update(
            produce(broker.bootstrap, later, acks="all", **{"message.timeout.ms": 60000})))
        t.start()
        time.sleep(3)
        os.remove(filler)
        t.join(90)
        assert result and all(err is None for err in result.values()), result
        assert read_all(broker.bootstrap) == acked + later

        # Nothing was left corrupt: a restart serves exactly the same records.
        broker.stop()
        broker = Broker(data, FAST_GROUPS)
        assert read_all(broker.bootstrap) == acked + later
    finally:
        broker.stop()
