"""kafka-python against Runnel: producer, consumer by assignment, admin, offsets."""

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

TIMEOUT_MS = 20000


def admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume(broker, topic_name, compression):
    admin(broker).create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
    # kafka-python 3 turns idempotence on by default (InitProducerId, sequence numbers).
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=compression, acks="all")
    futures = [p.send(topic_name, key=f"k{i % 5}".encode(), value=f"v{i}".encode(), headers=[("h", b"1")]) for i in range(100)]
    offsets = [f.get(timeout=20) for f in futures]
    assert {m.partition for m in offsets} <= {0, 1}
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])
    c.seek_to_beginning()
    got = []
    for m in c:
        got.append(m)
        if len(got) == 100:
            break
    c.close()
    assert sorted(m.value for m in got) == sorted(f"v{i}".encode() for i in range(100))
    assert all(m.headers == [("h", b"1")] for m in got)


def test_admin_offsets_and_errors(broker, topic_name):
    a = admin(broker)
    a.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1)])
    assert topic_name in a.list_topics()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
    for i in range(30):
        p.send(topic_name, value=b"x", partition=1, timestamp_ms=1_000_000 + i)
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    tp = TopicPartition(topic_name, 1)
    assert c.end_offsets([tp])[tp] == 30
    assert c.beginning_offsets([tp])[tp] == 0
    found = c.offsets_for_times({tp: 1_000_010})[tp]
    assert (found.offset, found.timestamp) == (10, 1_000_010)
    c.close()
    a.delete_topics([topic_name])
    assert topic_name not in a.list_topics()
    a.close()
