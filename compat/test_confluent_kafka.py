"""confluent-kafka (librdkafka) against Runnel: producer, consumer by assignment, admin."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 20


def create(broker, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name]
    fut.result(timeout=TIMEOUT)


def consume(broker, topic, partitions, expected):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + TIMEOUT
    while len(out) < expected and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_consume(broker, topic_name, compression, acks):
    create(broker, topic_name, partitions=3)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": compression, "acks": acks, "linger.ms": 5})
    errors = []
    for i in range(200):
        p.produce(topic_name, key=f"k{i % 11}", value=f"v{i}", headers=[("n", str(i).encode())], on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(TIMEOUT) == 0
    assert not errors
    got = consume(broker, topic_name, 3, 200)
    assert sorted(m.value().decode() for m in got) == sorted(f"v{i}" for i in range(200))
    by_key = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(int(m.value()[1:]))
    for key, values in by_key.items():
        assert values == sorted(values), f"order within key {key}"
    assert all(m.headers()[0][1] == m.value()[1:] for m in got)


def test_admin_and_metadata(broker, topic_name):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(broker, topic_name, partitions=5, config={"retention.ms": "3600000"})
    md = admin.list_topics(timeout=TIMEOUT)
    assert len(md.topics[topic_name].partitions) == 5
    assert md.cluster_id
    dup = admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name]
    with pytest.raises(KafkaException) as e:
        dup.result(timeout=TIMEOUT)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    admin.delete_topics([topic_name])[topic_name].result(timeout=TIMEOUT)
    assert topic_name not in admin.list_topics(timeout=TIMEOUT).topics


def test_offsets_for_times_and_watermarks(broker, topic_name):
    create(broker, topic_name)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(50):
        p.produce(topic_name, value=b"x", timestamp=5_000_000 + i * 100)
    p.flush(TIMEOUT)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=TIMEOUT) == (0, 50)
    [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, 5_002_050)], timeout=TIMEOUT)
    assert tp.offset == 21
    c.close()


def test_auto_create_on_produce(broker, topic_name):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic_name, value=b"hello")
    assert p.flush(TIMEOUT) == 0
    got = consume(broker, topic_name, 1, 1)
    assert got[0].value() == b"hello"


def test_idempotent_producer(broker, topic_name):
    create(broker, topic_name, partitions=2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 2})
    for i in range(1000):
        p.produce(topic_name, value=str(i).encode(), partition=i % 2)
    assert p.flush(TIMEOUT) == 0
    got = consume(broker, topic_name, 2, 1000)
    for part in (0, 1):
        values = [int(m.value()) for m in got if m.partition() == part]
        assert values == list(range(part, 1000, 2))


def test_retention_and_checkpoints_run_on_their_timers(tmp_path):
    """The broker's maintenance runs by itself: with a short check interval, time retention
    removes rolled segments of a topic with retention.ms=1000 (the log start moves) while the
    broker stays idle, and a restart after kill -9 finds the same log start."""
    from conftest import Broker
    b = Broker(str(tmp_path / "data"), ["--set", "log.retention.check.interval.ms=300",
                                        "--set", "log.flush.offset.checkpoint.interval.ms=300"])
    try:
        create(b, "expiring", config={"retention.ms": "1000", "segment.bytes": "2048"})
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        for i in range(40):
            p.produce("expiring", value=b"%03d" % i + b"." * 200, partition=0)
            p.flush(TIMEOUT)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
        tp = TopicPartition("expiring", 0)
        low, high = c.get_watermark_offsets(tp, timeout=TIMEOUT)
        assert (low, high) == (0, 40)
        deadline = time.time() + 20
        while low == 0 and time.time() < deadline:
            time.sleep(0.2)
            low, _ = c.get_watermark_offsets(tp, timeout=TIMEOUT)
        c.close()
        assert 0 < low < 40, "rolled segments expired; the active one stays"
        time.sleep(1)  # a checkpoint pass after the deletion
        b.kill9_and_restart()
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
        assert c.get_watermark_offsets(tp, timeout=TIMEOUT) == (low, 40)
        c.close()
    finally:
        b.stop()
