"""Budgets on what one request may ask of the broker, seen through stock clients: records per
produced batch (`message.max.records`), what a compressed batch may inflate to
(`message.max.decompressed.bytes`, a zip bomb), and metadata changes per admin request
(Kafka's `controller.max.records.per.batch`). Each is refused with Kafka's error code, the
broker keeps serving, and requests within the budget go through."""

import os
import tempfile

import pytest
from conftest import FAST_GROUPS, Broker, produce_values, read_partition
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError

MAX_RECORDS = 100
MAX_INFLATED = 1 << 20
MAX_CHANGES = 50


@pytest.fixture(scope="module")
def budgeted():
    with tempfile.TemporaryDirectory() as d:
        b = Broker(os.path.join(d, "data"), [
            *FAST_GROUPS,
            "--set", f"message.max.records={MAX_RECORDS}",
            "--set", f"message.max.decompressed.bytes={MAX_INFLATED}",
            "--set", f"controller.max.records.per.batch={MAX_CHANGES}",
        ])
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("budget", 1, 1)])["budget"].result(timeout=30)
        yield b, admin
        b.stop()


def error_code(future):
    try:
        future.result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0].code()


def test_a_batch_of_more_records_than_the_budget_is_refused(budgeted):
    broker, _ = budgeted
    outcome = {}

    def send(batch_size, values):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200,
                      "batch.num.messages": batch_size, "retries": 0,
                      "enable.idempotence": False})
        for v in values:
            p.produce("budget", value=v, partition=0,
                      on_delivery=lambda err, msg, v=v: outcome.__setitem__(v, err))
        assert p.flush(30) == 0

    # librdkafka gathers up to batch.num.messages records into one batch while it lingers.
    big = [b"big-%d" % i for i in range(400)]
    send(1000, big)
    codes = {outcome[v].code() if outcome[v] else None for v in big}
    assert KafkaError.MSG_SIZE_TOO_LARGE in codes, codes
    small = [b"small-%d" % i for i in range(400)]
    send(MAX_RECORDS, small)
    assert all(outcome[v] is None for v in small)
    stored = read_partition(broker.bootstrap, "budget")
    assert [v for v in stored if v.startswith(b"small-")] == small


def test_a_zip_bomb_is_refused_and_compressed_batches_within_the_limit_stored(budgeted):
    broker, _ = budgeted
    client = {"compression.type": "gzip", "message.max.bytes": 10_000_000,
              "retries": 0, "enable.idempotence": False}
    # 4 MiB of zeros: a few KiB gzipped, well inside max.message.bytes on the wire.
    bomb = b"\0" * (4 << 20)
    err = produce_values(broker.bootstrap, "budget", [bomb], **client)[bomb]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    fine = b"\0" * (MAX_INFLATED // 2)
    assert produce_values(broker.bootstrap, "budget", [fine], **client)[fine] is None
    assert fine in read_partition(broker.bootstrap, "budget")

    # kafka-python sees the same refusal, as its MessageSizeTooLargeError.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip",
                      max_request_size=10_000_000, retries=0)
    with pytest.raises(MessageSizeTooLargeError):
        p.send("budget", bomb, partition=0).get(timeout=30)
    p.send("budget", fine, partition=0).get(timeout=30)
    p.close()


def test_admin_requests_past_the_controller_budget_fail_whole(budgeted):
    _, admin = budgeted
    # 3 x 20 = 60 partitions in one request: refused whole, nothing created.
    names = [f"wide-{i}" for i in range(3)]
    fs = admin.create_topics([NewTopic(n, 20, 1) for n in names])
    assert {error_code(f) for f in fs.values()} == {KafkaError.POLICY_VIOLATION}
    assert not set(names) & set(admin.list_topics(timeout=10).topics)
    # 2 x 20 = 40 within the budget.
    fs = admin.create_topics([NewTopic(n, 20, 1) for n in names[:2]])
    assert {error_code(f) for f in fs.values()} == {None}

    # CreatePartitions counts partitions added: 20 -> 60 and 20 -> 40 is 60 new.
    fs = admin.create_partitions([NewPartitions(names[0], 60), NewPartitions(names[1], 40)])
    assert {error_code(f) for f in fs.values()} == {KafkaError.POLICY_VIOLATION}
    md = admin.list_topics(timeout=10).topics
    assert len(md[names[0]].partitions) == 20 and len(md[names[1]].partitions) == 20
    fs = admin.create_partitions([NewPartitions(names[0], 45)])
    assert {error_code(f) for f in fs.values()} == {None}

    # DeleteTopics counts topics: 51 names (49 of them unknown) are refused whole.
    doomed = names[:2] + [f"never-made-{i}" for i in range(MAX_CHANGES - 1)]
    fs = admin.delete_topics(doomed, operation_timeout=30)
    assert {error_code(f) for f in fs.values()} == {KafkaError.POLICY_VIOLATION}
    assert set(names[:2]) <= set(admin.list_topics(timeout=10).topics)
    fs = admin.delete_topics(names[:2], operation_timeout=30)
    assert {error_code(f) for f in fs.values()} == {None}
