"""The Admin API through real admin clients (confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient): topics, partitions, configs, records, cluster, log dirs; error cases;
persistence across a kill -9; and `runnel topics describe --json` against the Admin API."""

import json
import os
import subprocess
import tempfile
import time

import pytest
from conftest import Broker
from confluent_kafka import KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic, ResourceType)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType, NewPartitions as KNewPartitions, NewTopic as KNewTopic
from kafka.errors import (InvalidPartitionsError, PolicyViolationError, InvalidReplicationFactorError,
                          InvalidTopicError, TopicAlreadyExistsError)

BIN = os.environ.get("RUNNEL_BIN")


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def result(futures, key):
    return futures[key].result(timeout=20)


def error_name(excinfo):
    return excinfo.value.args[0].name()


def topic_configs(a, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return result(a.describe_configs([res]), res)


def produce(broker, topic, n, partition=0):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(n):
        p.produce(topic, value=str(i).encode(), partition=partition)
    assert p.flush(20) == 0


def test_create_topics_checks_like_kafka(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 3, 1, config={"retention.ms": "3600000"})]), topic_name)
    with pytest.raises(KafkaException) as e:
        result(a.create_topics([NewTopic(topic_name, 3, 1)]), topic_name)
    assert error_name(e) == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaException) as e:
        result(a.create_topics([NewTopic(topic_name + "-rf", 1, 3)]), topic_name + "-rf")
    assert error_name(e) == "INVALID_REPLICATION_FACTOR"
    with pytest.raises(KafkaException) as e:
        result(a.create_topics([NewTopic(topic_name + "-cfg", 1, 1, config={"retention.ms": "soon"})]), topic_name + "-cfg")
    assert error_name(e) == "INVALID_CONFIG"
    assert "retention.ms" in str(e.value)
    with pytest.raises(KafkaException) as e:
        result(a.create_topics([NewTopic("bad/name", 1, 1)]), "bad/name")
    assert error_name(e) == "TOPIC_EXCEPTION"  # librdkafka's name for INVALID_TOPIC_EXCEPTION
    # validate_only creates nothing.
    result(a.create_topics([NewTopic(topic_name + "-dry", 2, 1)], validate_only=True), topic_name + "-dry")
    assert topic_name + "-dry" not in a.list_topics(timeout=10).topics


def test_create_partitions_only_increase(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 2, 1)]), topic_name)
    result(a.create_partitions([NewPartitions(topic_name, 4)], validate_only=True), topic_name)
    assert len(a.list_topics(timeout=10).topics[topic_name].partitions) == 2
    result(a.create_partitions([NewPartitions(topic_name, 4)]), topic_name)
    assert len(a.list_topics(timeout=10).topics[topic_name].partitions) == 4
    produce(broker, topic_name, 3, partition=3)
    for n in (4, 3):
        with pytest.raises(KafkaException) as e:
            result(a.create_partitions([NewPartitions(topic_name, n)]), topic_name)
        assert error_name(e) == "INVALID_PARTITIONS"


def test_describe_configs_sources_synonyms_and_docs(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 1, 1, config={"retention.ms": "120000"})]), topic_name)
    res = ConfigResource(ResourceType.TOPIC, topic_name)
    cfg = result(a.describe_configs([res]), res)
    assert {"retention.ms", "segment.bytes", "cleanup.policy", "max.message.bytes", "min.insync.replicas"} <= set(cfg)
    r = cfg["retention.ms"]
    assert r.value == "120000" and r.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    synonyms = list(r.synonyms.values())
    assert [x.name for x in synonyms][:2] == ["retention.ms", "log.retention.ms"]
    assert synonyms[-1].source == ConfigSource.DEFAULT_CONFIG.value
    assert cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert not r.is_read_only and not r.is_sensitive

    b = ConfigResource(ResourceType.BROKER, "1")
    bcfg = result(a.describe_configs([b]), b)
    assert len(bcfg) > 20
    assert bcfg["group.initial.rebalance.delay.ms"].value == "300"
    assert bcfg["group.initial.rebalance.delay.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert bcfg["log.retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert bcfg["num.partitions"].is_read_only

    missing = ConfigResource(ResourceType.TOPIC, topic_name + "-missing")
    with pytest.raises(KafkaException) as e:
        result(a.describe_configs([missing]), missing)
    assert error_name(e) == "UNKNOWN_TOPIC_OR_PART"


def test_incremental_alter_configs_takes_effect_and_validates(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 1, 1)]), topic_name)
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    result(a.incremental_alter_configs([res]), res)
    cfg = topic_configs(a, topic_name)
    assert cfg["retention.ms"].value == "5000"
    assert cfg["cleanup.policy"].value == "delete,compact"
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SUBTRACT),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    result(a.incremental_alter_configs([res]), res)
    cfg = topic_configs(a, topic_name)
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    for bad in [ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
                ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
                ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.APPEND)]:
        res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[bad])
        with pytest.raises(KafkaException) as e:
            result(a.incremental_alter_configs([res]), res)
        assert error_name(e) == "INVALID_CONFIG", bad.name
    b = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        result(a.incremental_alter_configs([b]), b)
    assert error_name(e) == "INVALID_CONFIG"


def test_delete_records_and_list_offsets(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 1, 1)]), topic_name)
    produce(broker, topic_name, 10)
    tp = TopicPartition(topic_name, 0, 4)
    deleted = result(a.delete_records([tp]), tp)
    assert deleted.low_watermark == 4
    from confluent_kafka.admin import OffsetSpec
    tp = TopicPartition(topic_name, 0)
    earliest = result(a.list_offsets({tp: OffsetSpec.earliest()}), tp)
    latest = result(a.list_offsets({tp: OffsetSpec.latest()}), tp)
    maxts = result(a.list_offsets({tp: OffsetSpec.max_timestamp()}), tp)
    assert (earliest.offset, latest.offset) == (4, 10)
    assert 4 <= maxts.offset <= 9
    too_far = TopicPartition(topic_name, 0, 99)
    with pytest.raises(KafkaException) as e:
        result(a.delete_records([too_far]), too_far)
    assert error_name(e) == "OFFSET_OUT_OF_RANGE"


def test_cluster_topics_and_log_dirs(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 2, 1)]), topic_name)
    produce(broker, topic_name, 5)
    cluster = a.describe_cluster().result(timeout=20)
    assert cluster.controller.id == 1 and [n.id for n in cluster.nodes] == [1]
    assert cluster.cluster_id
    d = result(a.describe_topics(TopicCollection([topic_name])), topic_name)
    assert d.name == topic_name and not d.is_internal
    assert [(p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in d.partitions] == \
        [(0, 1, [1], [1]), (1, 1, [1], [1])]

    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    [only] = ka.describe_log_dirs()
    assert only["broker"] == 1
    [log_dir] = only["log_dirs"]
    assert log_dir["error_code"] == 0 and os.path.isabs(log_dir["log_dir"])
    sizes = {(t["name"], p["partition_index"]): (p["partition_size"], p["offset_lag"])
             for t in log_dir["topics"] for p in t["partitions"]}
    assert sizes[(topic_name, 0)][0] > 0 and sizes[(topic_name, 1)] == (0, 0)
    ka.close()


def test_kafka_python_admin(broker, topic_name):
    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    ka.create_topics([KNewTopic(topic_name, 2, 1, topic_configs={"retention.bytes": "1048576"})])
    with pytest.raises(TopicAlreadyExistsError):
        ka.create_topics([KNewTopic(topic_name, 2, 1)])
    with pytest.raises(InvalidReplicationFactorError):
        ka.create_topics([KNewTopic(topic_name + "-rf", 1, 2)])
    with pytest.raises(InvalidTopicError):
        ka.create_topics([KNewTopic("..", 1, 1)])
    # Explicit replica assignments on the one broker (confluent-kafka's Python binding refuses
    # to send them: it insists on a partition count).
    ka.create_topics([KNewTopic(topic_name + "-asg", -1, -1, replica_assignments={0: [1], 1: [1]})])
    assert len(admin(broker).list_topics(timeout=10).topics[topic_name + "-asg"].partitions) == 2
    cfg = ka.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)])
    assert "retention.bytes" in repr(cfg) and "1048576" in repr(cfg)
    a = admin(broker)
    # Legacy AlterConfigs replaces the whole set of overrides (kafka-python re-sends the
    # others itself; confluent-kafka's alter_configs does not).
    ka.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name, configs={"retention.ms": "60000"})],
                     incremental=False)
    cfg = topic_configs(a, topic_name)
    assert (cfg["retention.ms"].value, cfg["retention.bytes"].value) == ("60000", "1048576")
    legacy = ConfigResource(ResourceType.TOPIC, topic_name, set_config={"retention.ms": "70000"})
    result(a.alter_configs([legacy]), legacy)
    cfg = topic_configs(a, topic_name)
    assert cfg["retention.ms"].value == "70000"
    assert cfg["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    ka.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name, configs={"retention.bytes": "2048"})],
                     incremental=True)
    cfg = topic_configs(a, topic_name)
    assert (cfg["retention.ms"].value, cfg["retention.bytes"].value) == ("70000", "2048")
    ka.create_partitions({topic_name: KNewPartitions(total_count=3)})
    with pytest.raises(InvalidPartitionsError):
        ka.create_partitions({topic_name: KNewPartitions(total_count=1)})
    assert len(a.list_topics(timeout=10).topics[topic_name].partitions) == 3
    ka.delete_topics([topic_name])
    assert topic_name not in a.list_topics(timeout=10).topics
    ka.close()


def test_topics_and_configs_survive_kill9(private_broker, topic_name):
    b = private_broker
    a = admin(b)
    result(a.create_topics([NewTopic(topic_name, 2, 1, config={"retention.ms": "777777"})]), topic_name)
    result(a.create_partitions([NewPartitions(topic_name, 5)]), topic_name)
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", "65536", incremental_operation=AlterConfigOpType.SET)])
    result(a.incremental_alter_configs([res]), res)
    old_id = result(a.describe_topics(TopicCollection([topic_name])), topic_name).topic_id
    b.kill9_and_restart()
    a = admin(b)
    d = result(a.describe_topics(TopicCollection([topic_name])), topic_name)
    assert len(d.partitions) == 5 and str(d.topic_id) == str(old_id)
    cfg = topic_configs(a, topic_name)
    assert (cfg["retention.ms"].value, cfg["max.message.bytes"].value) == ("777777", "65536")
    # Deleted and re-created: a new topic (new id, no old data).
    produce(b, topic_name, 3)
    result(a.delete_topics([topic_name]), topic_name)
    result(a.create_topics([NewTopic(topic_name, 1, 1)]), topic_name)
    d = result(a.describe_topics(TopicCollection([topic_name])), topic_name)
    assert str(d.topic_id) != str(old_id)
    from confluent_kafka.admin import OffsetSpec
    tp = TopicPartition(topic_name, 0)
    assert result(a.list_offsets({tp: OffsetSpec.latest()}), tp).offset == 0


def test_runnel_topics_describe_agrees_with_the_admin_api(broker, topic_name):
    a = admin(broker)
    result(a.create_topics([NewTopic(topic_name, 3, 1, config={"segment.ms": "3600000"})]), topic_name)
    out = subprocess.run([BIN, "topics", "describe", "-b", broker.bootstrap, topic_name, "--json"],
                         capture_output=True, text=True, timeout=30, check=True)
    mine = json.loads(out.stdout)
    d = result(a.describe_topics(TopicCollection([topic_name])), topic_name)
    # librdkafka prints ids in standard base64, Kafka (and runnel) in the URL-safe alphabet.
    theirs = str(d.topic_id).replace("+", "-").replace("/", "_")
    assert mine["topic"] == d.name and mine["topic_id"] == theirs
    assert mine["internal"] == d.is_internal
    assert [(p["partition"], p["leader"], p["replicas"], p["isr"]) for p in mine["partitions"]] == \
        [(p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in d.partitions]
    cfg = topic_configs(a, topic_name)
    assert {c["name"]: c["value"] for c in mine["configs"]} == {k: v.value for k, v in cfg.items()}
    sources = {c["name"]: c["source"] for c in mine["configs"]}
    assert sources["segment.ms"] == "DYNAMIC_TOPIC_CONFIG"
    assert {k: ConfigSource(v.source).name for k, v in cfg.items()} == sources


def runnel(broker, *args):
    out = subprocess.run([BIN, *args[:2], "-b", broker.bootstrap, *args[2:]],
                         capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


def test_runnel_cli_topics_configs_offsets(broker, topic_name):
    rc, out, err = runnel(broker, "topics", "create", topic_name, "-p", "2", "-c", "retention.ms=99000")
    assert rc == 0, err
    rc, out, _ = runnel(broker, "topics", "list", "--json")
    assert {"topic": topic_name, "partitions": 2, "internal": False} in json.loads(out)
    rc, out, err = runnel(broker, "topics", "alter", topic_name, "-p", "3")
    assert rc == 0, err
    rc, out, err = runnel(broker, "topics", "alter", topic_name, "-p", "1")
    assert rc == 1 and "InvalidPartitions" in err and err.count("\n") == 1, err
    rc, out, err = runnel(broker, "configs", "set", "--topic", topic_name, "segment.ms=7200000", "max.message.bytes=2048")
    assert rc == 0, err
    rc, out, err = runnel(broker, "configs", "delete", "--topic", topic_name, "retention.ms")
    assert rc == 0, err
    rc, out, _ = runnel(broker, "configs", "describe", "--topic", topic_name, "--json")
    cfg = {c["name"]: (c["value"], c["source"]) for c in json.loads(out)}
    assert cfg["segment.ms"] == ("7200000", "DYNAMIC_TOPIC_CONFIG")
    assert cfg["retention.ms"][1] == "DEFAULT_CONFIG"
    rc, out, err = runnel(broker, "configs", "set", "--topic", topic_name, "retention.ms=soon")
    assert rc == 1 and "InvalidConfig" in err, err
    rc, out, _ = runnel(broker, "configs", "describe", "--broker", "--json")
    assert any(c["name"] == "num.partitions" and c["read_only"] for c in json.loads(out))
    produce(broker, topic_name, 7, partition=1)
    rc, out, _ = runnel(broker, "offsets", topic_name, "--json")
    assert [(o["partition"], o["offset"]) for o in json.loads(out)] == [(0, 0), (1, 7), (2, 0)]
    rc, out, _ = runnel(broker, "offsets", topic_name, "--time", "earliest")
    assert out.split("\n")[0].split() == ["PARTITION", "OFFSET", "TIMESTAMP"]
    rc, out, err = runnel(broker, "topics", "delete", topic_name)
    assert rc == 0, err
    rc, out, err = runnel(broker, "topics", "describe", topic_name)
    assert rc == 1 and "UnknownTopicOrPartition" in err


@pytest.fixture
def budget_broker():
    """A broker of the test's own whose partition budget is small enough to reach."""
    with tempfile.TemporaryDirectory() as d:
        b = Broker(os.path.join(d, "data"), ["--set", "max.broker.partitions=50"])
        yield b
        b.stop()


def test_partition_budget_refuses_whole_requests(budget_broker, topic_name):
    a = admin(budget_broker)
    result(a.create_topics([NewTopic(topic_name, 40, 1)]), topic_name)

    def refused(futures, key):
        with pytest.raises(KafkaException) as e:
            result(futures, key)
        assert error_name(e) == "POLICY_VIOLATION", e.value
        assert "max.broker.partitions=50" in str(e.value), e.value

    over = topic_name + "-over"
    refused(a.create_topics([NewTopic(over, 20, 1)]), over)
    refused(a.create_topics([NewTopic(over, 20, 1)], validate_only=True), over)
    refused(a.create_partitions([NewPartitions(topic_name, 60)]), topic_name)
    # Two billion partitions (librdkafka stops at 100,000 itself; kafka-python sends it) are
    # refused before anything is allocated, as Kafka does, by the per-request budget
    # (controller.max.records.per.batch).
    ka = KafkaAdminClient(bootstrap_servers=budget_broker.bootstrap)
    for call, words in ((lambda: ka.create_topics([KNewTopic(over, 2**31 - 1, 1)]),
                         "Excessively large number of partitions per request."),
                        (lambda: ka.create_partitions({topic_name: KNewPartitions(2**31 - 1)}),
                         "Unable to perform excessively large batch operation.")):
        with pytest.raises(PolicyViolationError) as e:
            call()
        assert words in str(e.value)
    ka.close()
    topics = a.list_topics(timeout=10).topics
    assert over not in topics and len(topics[topic_name].partitions) == 40
    assert not [d for d in os.listdir(budget_broker.data_dir) if d.startswith(over)]
    # Up to the limit still works, and the limit is reported as a broker config.
    result(a.create_topics([NewTopic(over, 10, 1)]), over)
    produce(budget_broker, over, 3, partition=9)
    res = ConfigResource(ResourceType.BROKER, "1")
    assert result(a.describe_configs([res]), res)["max.broker.partitions"].value == "50"


def test_a_partition_that_cannot_be_created_rolls_its_topic_back(private_broker, topic_name):
    b = private_broker
    a = admin(b)
    # A file where partition 2's directory must go: its log cannot be created.
    with open(os.path.join(b.data_dir, f"{topic_name}-2"), "w") as f:
        f.write("in the way")
    with pytest.raises(KafkaException) as e:
        result(a.create_topics([NewTopic(topic_name, 4, 1)]), topic_name)
    assert error_name(e) == "KAFKA_STORAGE_ERROR", e.value
    assert "Partition 2" in str(e.value)
    assert topic_name not in a.list_topics(timeout=10).topics
    deadline = time.time() + 10
    while [d for d in os.listdir(b.data_dir) if d.startswith(topic_name + "-") and os.path.isdir(os.path.join(b.data_dir, d))]:
        assert time.time() < deadline, os.listdir(b.data_dir)
        time.sleep(0.1)
    # The broker keeps serving, and the name can be used once the obstacle is gone.
    os.remove(os.path.join(b.data_dir, f"{topic_name}-2"))
    result(a.create_topics([NewTopic(topic_name, 4, 1)]), topic_name)
    produce(b, topic_name, 5, partition=2)
