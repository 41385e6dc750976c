"""Durable acks (`flush.messages=1`) with producers that keep several requests in flight on
one connection: the broker appends a produce while the one before it waits for its fsync, and
still answers in order, so every partition holds what was sent, in the order it was sent."""

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import read_partition

PARTITIONS = 6
PER_PARTITION = 2000


def create_durable_topic(bootstrap, topic, replicas=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"flush.messages": "1", "min.insync.replicas": str(min(replicas, 2))}
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                            replication_factor=replicas, config=config)])
    futures[topic].result(30)


def sent(partition):
    return [f"{partition}-{i}".encode() for i in range(PER_PARTITION)]


def assert_every_partition_in_order(bootstrap, topic):
    for p in range(PARTITIONS):
        assert read_partition(bootstrap, topic, p) == sent(p), f"partition {p}"


def produce_idempotent(bootstrap, topic):
    """Every partition's values through librdkafka, idempotent, five requests in flight."""
    from confluent_kafka import Producer

    errors = []
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        # Small requests, so many are in flight at once.
        "linger.ms": 1,
        "batch.num.messages": 50,
    })
    for i in range(PER_PARTITION):
        for p in range(PARTITIONS):
            producer.produce(topic, value=sent(p)[i], partition=p,
                             on_delivery=lambda err, _msg: err and errors.append(err))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []


def test_librdkafka_idempotent_producer_with_five_in_flight(broker, topic_name):
    create_durable_topic(broker.bootstrap, topic_name)
    produce_idempotent(broker.bootstrap, topic_name)
    assert_every_partition_in_order(broker.bootstrap, topic_name)


def test_three_replicas_each_fsyncing_with_five_in_flight(cluster, topic_name):
    """acks=all into three replicas, min.insync.replicas=2: the leader's group commit and
    the followers' own fsyncs as they append; read back through another broker."""
    create_durable_topic(cluster.nodes[0].bootstrap, topic_name, replicas=3)
    produce_idempotent(cluster.nodes[1].bootstrap, topic_name)
    assert_every_partition_in_order(cluster.nodes[2].bootstrap, topic_name)


@pytest.mark.parametrize("acks", [1, "all"])
def test_kafka_python_with_five_in_flight(broker, topic_name, acks):
    from kafka import KafkaProducer

    create_durable_topic(broker.bootstrap, topic_name)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks,
                             max_in_flight_requests_per_connection=5, linger_ms=1,
                             batch_size=2048, retries=0)
    futures = [producer.send(topic_name, value=sent(p)[i], partition=p)
               for i in range(PER_PARTITION) for p in range(PARTITIONS)]
    producer.flush(60)
    offsets = {}
    for f in futures:
        meta = f.get(timeout=30)
        offsets.setdefault(meta.partition, []).append(meta.offset)
    producer.close()
    for p in range(PARTITIONS):
        assert offsets[p] == list(range(PER_PARTITION)), f"partition {p}"
    assert_every_partition_in_order(broker.bootstrap, topic_name)
