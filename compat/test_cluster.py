"""Kafka's clients against a three-node Runnel cluster, each through a single bootstrap broker:
confluent-kafka and kafka-python produce, consume in groups and administer; kcat lists the
brokers; a killed broker's partitions go offline and return with it, and nothing acknowledged
is lost."""

import subprocess
import time

from confluent_kafka import Consumer, ElectionType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic as KNewTopic

from conftest import BIN


def wait_for(check, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def create(bootstrap, name, partitions, rf=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf)], operation_timeout=30)
    fs[name].result(timeout=30)


def consume_group(bootstrap, topic, group, expected, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = set()
    deadline = time.time() + timeout
    while len(seen) < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
    return seen


def test_kcat_lists_three_brokers_and_a_controller(cluster):
    out = subprocess.run(["kcat", "-b", cluster.nodes[1].bootstrap, "-L"],
                         capture_output=True, text=True, timeout=30).stdout
    assert " 3 brokers:" in out
    assert out.count("(controller)") == 1


def test_topic_spreads_and_clients_route_through_any_broker(cluster, topic_name):
    create(cluster.nodes[0].bootstrap, topic_name, 12)
    # Another broker learns the topic a moment after the one that created it.
    other = AdminClient({"bootstrap.servers": cluster.nodes[2].bootstrap})
    assert wait_for(lambda: topic_name in other.list_topics(timeout=20).topics)
    md = other.list_topics(timeout=20)
    leaders = [p.leader for p in md.topics[topic_name].partitions.values()]
    assert sorted(leaders.count(b) for b in (1, 2, 3)) == [4, 4, 4]
    p = Producer({"bootstrap.servers": cluster.nodes[1].bootstrap})
    acked = []
    for i in range(600):
        p.produce(topic_name, key=str(i), value=f"v{i}",
                  on_delivery=lambda err, msg: err is None and acked.append(msg.value().decode()))
    assert p.flush(30) == 0
    assert len(acked) == 600
    seen = consume_group(cluster.nodes[2].bootstrap, topic_name, f"g-{topic_name}", 600)
    assert seen == set(acked)


def test_kafka_python_through_one_broker(cluster, topic_name):
    bootstrap = cluster.nodes[2].bootstrap
    KafkaAdminClient(bootstrap_servers=bootstrap).create_topics(
        [KNewTopic(topic_name, num_partitions=6, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(120):
        producer.send(topic_name, value=f"k{i}".encode())
    producer.flush(30)
    consumer = KafkaConsumer(topic_name, bootstrap_servers=cluster.nodes[0].bootstrap,
                             group_id=f"kp-{topic_name}", auto_offset_reset="earliest",
                             consumer_timeout_ms=15000)
    seen = set()
    for m in consumer:
        seen.add(m.value.decode())
        if len(seen) == 120:
            break
    consumer.close()
    assert len(seen) == 120


def test_replication_factor_is_checked_against_live_brokers(cluster, topic_name):
    create(cluster.nodes[0].bootstrap, topic_name, 3, rf=3)
    admin = AdminClient({"bootstrap.servers": cluster.nodes[0].bootstrap})
    fs = admin.create_topics(
        [NewTopic(topic_name + "-rf4", num_partitions=1, replication_factor=4)])
    try:
        fs[topic_name + "-rf4"].result(timeout=30)
        raise AssertionError("RF 4 on three brokers was accepted")
    except Exception as e:  # noqa: BLE001 - the KafkaException carries the code
        assert "INVALID_REPLICATION_FACTOR" in str(e) or "replication" in str(e).lower()


def test_killed_broker_goes_offline_and_comes_back_with_its_data(cluster, topic_name):
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes)
    create(bootstrap, topic_name, 6)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(300):
        p.produce(topic_name, value=f"a{i}")
    assert p.flush(30) == 0
    victim = cluster.nodes[2]
    victim.kill9()
    others = cluster.nodes[0].bootstrap
    admin = AdminClient({"bootstrap.servers": others})

    def offline():
        md = admin.list_topics(topic_name, timeout=10)
        return len(md.brokers) == 2 and any(
            p.leader == -1 for p in md.topics[topic_name].partitions.values())
    assert wait_for(offline, timeout=30), "the killed broker was not fenced"
    victim.spawn()
    victim.wait_ready()

    def online():
        md = admin.list_topics(topic_name, timeout=10)
        return len(md.brokers) == 3 and all(
            p.leader > 0 for p in md.topics[topic_name].partitions.values())
    assert wait_for(online, timeout=30), "partitions stayed offline"
    seen = consume_group(bootstrap, topic_name, f"g-{topic_name}", 300)
    assert len(seen) == 300


def test_group_resumes_after_its_coordinator_is_killed_and_restarted(cluster, topic_name):
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes)
    create(bootstrap, topic_name, 3)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(90):
        p.produce(topic_name, value=f"b{i}")
    assert p.flush(30) == 0
    group = f"g-{topic_name}"
    assert len(consume_group(bootstrap, topic_name, group, 90)) == 90  # commits at the end
    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = next(n for n in cluster.nodes if n.node_id == desc.coordinator.id)
    coordinator.kill9()
    coordinator.spawn()
    coordinator.wait_ready()
    for i in range(30):
        p.produce(topic_name, value=f"c{i}")
    assert p.flush(30) == 0
    # Only what came after the commit is read again: the restarted coordinator still has it.
    seen = consume_group(bootstrap, topic_name, group, 30)
    assert seen == {f"c{i}" for i in range(30)}


def test_clients_ride_through_a_leader_kill_with_default_settings(cluster, topic_name):
    """confluent-kafka (acks=all by default) and kafka-python keep producing to an RF=3 topic
    while a partition leader is killed -9; everything they were told was written is there."""
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})],
                        operation_timeout=30)[topic_name].result(timeout=30)
    assert wait_for(lambda: topic_name in admin.list_topics(timeout=10).topics)
    leader0 = admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions[0].leader
    victim = next(n for n in cluster.nodes if n.node_id == leader0)
    ck = Producer({"bootstrap.servers": bootstrap})
    kp = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    acked, sent_at = set(), {}

    def delivered(err, msg):
        if err is None:
            acked.add(msg.value().decode())

    pending = []
    start = time.time()
    i = 0
    killed = False
    while time.time() - start < 20:
        if not killed and time.time() - start > 2:
            victim.kill9()
            killed = True
        for name in (f"ck{i}", f"kp{i}"):
            sent_at[name] = time.time() - start
        ck.produce(topic_name, value=f"ck{i}", on_delivery=delivered)
        ck.poll(0)
        pending.append((f"kp{i}", kp.send(topic_name, value=f"kp{i}".encode())))
        i += 1
        time.sleep(0.02)
    assert ck.flush(60) == 0
    for name, f in pending:
        try:
            f.get(timeout=60)
            acked.add(name)
        except Exception:  # noqa: BLE001 - a send that failed is simply not acknowledged
            pass
    kp.close()
    # Once the partition moved (a session timeout after the kill), both clients got through.
    late = {n for n, t in sent_at.items() if t > 16}
    assert late and late <= acked, f"not acknowledged after the failover: {sorted(late - acked)[:5]}"
    victim.spawn()
    victim.wait_ready()
    seen = consume_group(bootstrap, topic_name, f"g-{topic_name}", len(acked), timeout=90)
    assert acked <= seen, f"{len(acked - seen)} acknowledged records lost"
    kc = KafkaConsumer(topic_name, bootstrap_servers=bootstrap.split(","),
                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
    assert acked <= {m.value.decode() for m in kc}
    kc.close()


def test_preferred_and_unclean_elections_through_the_admin_api(cluster, topic_name):
    """A broker back from a controlled shutdown leads nothing until ElectLeaders (PREFERRED)
    gives its partitions back; UNCLEAN and a second PREFERRED find nothing to elect."""
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=6, replication_factor=3)],
                        operation_timeout=30)[topic_name].result(timeout=30)
    assert wait_for(lambda: topic_name in admin.list_topics(timeout=10).topics)
    node = cluster.nodes[1]
    node.terminate()
    node.spawn()
    node.wait_ready()

    def partitions():
        return admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions.values()

    # Back in every ISR, but leading none of the partitions it prefers.
    assert wait_for(lambda: all(len(p.isrs) == 3 for p in partitions()), timeout=60)
    moved = {p.id for p in partitions() if p.replicas[0] == node.node_id}
    assert moved and all(p.leader != node.node_id for p in partitions() if p.id in moved)

    result = admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=30)
    elected = {tp.partition for tp, err in result.items() if tp.topic == topic_name}
    assert elected == moved, result
    assert all(err is None for tp, err in result.items() if tp.topic == topic_name), result
    # The broker that answered shows the new leaders; the one librdkafka asks next may apply the
    # metadata record a moment later (brokers' metadata images are eventually consistent).
    assert wait_for(lambda: all(p.leader == p.replicas[0] for p in partitions()), timeout=10)

    again = [TopicPartition(topic_name, p) for p in sorted(moved)]
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        result = admin.elect_leaders(election, again).result(timeout=30)
        assert len(result) == len(again)
        for tp, err in result.items():
            assert err is not None and "ELECTION_NOT_NEEDED" in str(err), (election, tp, err)
    missing = admin.elect_leaders(ElectionType.PREFERRED,
                                  [TopicPartition(topic_name, 99)]).result(timeout=30)
    assert "UNKNOWN_TOPIC_OR_PART" in str(list(missing.values())[0])


def test_runnel_consume_reads_every_leader_through_one_bootstrap(cluster, topic_name):
    """`runnel consume` (alone and in a group) fetches each partition from its leader, so one
    bootstrap broker is enough to read a topic spread over three."""
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes)
    create(bootstrap, topic_name, 6)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(120):
        p.produce(topic_name, value=f"r{i}", partition=i % 6)
    assert p.flush(30) == 0
    one = cluster.nodes[0].bootstrap
    for group in ([], ["--group", f"g-{topic_name}"]):
        out = subprocess.run(
            [BIN, "consume", topic_name, "-b", one, "--from-beginning", "--max-messages", "120",
             "--timeout-ms", "20000", *group],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert set(out.stdout.split()) == {f"r{i}" for i in range(120)}, (group, out.stderr)
