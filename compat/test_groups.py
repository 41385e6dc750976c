"""Consumer groups with real clients: members crashing and leaving (confluent-kafka in child
processes), kafka-python's group consumer and admin, confluent-kafka's group admin, kcat -G."""

import json
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException, Producer, TopicPartition as CTP
from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

HERE = pathlib.Path(__file__).resolve().parent
DEADLINE_S = 30


def create(broker, topic, partitions):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fs = admin.create_topics([CNewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for f in fs.values():
        f.result(timeout=20)


def produce(broker, topic, partitions, values):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for v in values:
        p.produce(topic, value=str(v).encode(), partition=v % partitions)
    assert p.flush(20) == 0


class Member:
    """A group_member.py child process and the JSON lines it prints."""

    def __init__(self, broker, group, topic):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), broker.bootstrap, group, topic],
            stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.values = []
        self.assigned = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def drain(self):
        while True:
            try:
                e = self.lines.get_nowait()
            except queue.Empty:
                return
            if "assigned" in e:
                self.assigned = e["assigned"]
            if "v" in e:
                self.values.append(int(e["v"]))

    def stop(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        self.drain()


def wait_for(members, cond, what):
    end = time.time() + DEADLINE_S
    while time.time() < end:
        for m in members:
            m.drain()
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {[(m.assigned, len(m.values)) for m in members]}")


def test_survivor_takes_over_after_a_leave_and_a_crash(broker, topic_name):
    create(broker, topic_name, 6)
    a, b, c = members = [Member(broker, "crashers", topic_name) for _ in range(3)]
    try:
        wait_for(members, lambda: all(len(m.assigned) == 2 for m in members), "2 partitions each")
        assert sorted(sum((m.assigned for m in members), [])) == list(range(6))
        produce(broker, topic_name, 6, range(300))
        wait_for(members, lambda: sum(len(m.values) for m in members) >= 300, "first 300")
        for m in members:
            assert all(v % 6 in m.assigned for v in m.values), "a member read a partition it does not own"

        a.stop(signal.SIGTERM)  # clean close: LeaveGroup
        b.stop(signal.SIGKILL)  # crash: its session (3 s) must expire
        produce(broker, topic_name, 6, range(300, 600))
        wait_for([c], lambda: len([v for v in c.values if v >= 300]) >= 300, "the survivor to read the rest")
        time.sleep(1)
        c.drain()
        assert c.assigned == list(range(6))
        everything = sorted(a.values + b.values + c.values)
        assert everything == list(range(600)), "committed work was lost or repeated"
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()


def test_kafka_python_group_consumer_resumes_and_admin_sees_the_group(broker, topic_name):
    create(broker, topic_name, 2)
    produce(broker, topic_name, 2, range(100))
    kw = dict(bootstrap_servers=broker.bootstrap, group_id="kp-group", auto_offset_reset="earliest",
              enable_auto_commit=False, consumer_timeout_ms=10000, session_timeout_ms=6000,
              heartbeat_interval_ms=500)
    c = KafkaConsumer(topic_name, **kw)
    got = []
    for m in c:
        got.append(int(m.value))
        if len(got) == 60:
            break
    c.commit()
    positions = {tp.partition: c.position(tp) for tp in c.assignment()}
    ad = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    listed = {g["group_id"]: g for g in ad.list_groups()}
    assert listed["kp-group"]["protocol_type"] == "consumer"
    assert listed["kp-group"]["group_state"] == "Stable"
    desc = ad.describe_groups(["kp-group"])["kp-group"]
    assert desc["group_state"] == "Stable" and desc["protocol_type"] == "consumer"
    assert len(desc["members"]) == 1
    offsets = ad.list_group_offsets({"kp-group": None})["kp-group"]
    assert {tp.partition: om.offset for tp, om in offsets.items()} == positions
    # OffsetDelete refuses partitions of a topic the live group consumes.
    refused = ad.delete_group_offsets("kp-group", [TopicPartition(topic_name, 0)])
    assert [e.__name__ for e in refused.values()] == ["GroupSubscribedToTopicError"]
    c.close()

    c = KafkaConsumer(topic_name, **kw)
    for m in c:
        got.append(int(m.value))
        if len(got) == 100:
            break
    c.commit()
    c.close()
    assert sorted(got) == list(range(100)), "resumed exactly after the commit"
    deleted = ad.delete_group_offsets("kp-group", [TopicPartition(topic_name, 0)])
    assert [e.__name__ for e in deleted.values()] == ["NoError"]
    left = ad.list_group_offsets({"kp-group": None})["kp-group"]
    assert [tp.partition for tp in left] == [1]
    assert ad.delete_groups(["kp-group"]) == {"kp-group": "OK"}
    assert "kp-group" not in [g["group_id"] for g in ad.list_groups()]
    assert ad.delete_groups(["kp-group"]) == {"kp-group": "GroupIdNotFoundError"}
    ad.close()


def test_kafka_python_simple_commit_metadata_round_trip(broker, topic_name):
    create(broker, topic_name, 1)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="simple-kp", enable_auto_commit=False)
    tp = TopicPartition(topic_name, 0)
    c.assign([tp])
    c.commit({tp: OffsetAndMetadata(7, "checkpoint-7", -1)})
    assert c.committed(tp) == 7
    meta = c.committed(tp, metadata=True)
    assert meta.metadata == "checkpoint-7"
    c.close()


def test_confluent_group_admin(broker, topic_name):
    create(broker, topic_name, 3)
    produce(broker, topic_name, 3, range(30))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ck-admin",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic_name])
    n = 0
    end = time.time() + DEADLINE_S
    while n < 30 and time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            n += 1
    assert n == 30
    c.commit(asynchronous=False)

    listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result()
    assert "ck-admin" in [g.group_id for g in listed.valid]
    d = admin.describe_consumer_groups(["ck-admin"])["ck-admin"].result()
    assert d.state == ConsumerGroupState.STABLE
    assert len(d.members) == 1
    assigned = sorted(tp.partition for tp in d.members[0].assignment.topic_partitions)
    assert assigned == [0, 1, 2]
    assert d.members[0].host.startswith("/127.0.0.1")

    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups(["ck-admin"])["ck-admin"].result()
    assert "NON_EMPTY_GROUP" in str(e.value)
    c.close()

    from confluent_kafka import ConsumerGroupTopicPartitions
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("ck-admin")])["ck-admin"].result()
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 10), (1, 10), (2, 10)]
    altered = admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("ck-admin", [CTP(topic_name, 1, 3)])])["ck-admin"].result()
    assert [(tp.partition, tp.offset) for tp in altered.topic_partitions] == [(1, 3)]
    listed = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result()
    assert "ck-admin" in [g.group_id for g in listed.valid]

    admin.delete_consumer_groups(["ck-admin"])["ck-admin"].result()
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups(["ck-admin"])["ck-admin"].result()
    assert "GROUP_ID_NOT_FOUND" in str(e.value)


def test_kcat_balanced_consumer(broker, topic_name):
    create(broker, topic_name, 4)
    produce(broker, topic_name, 4, range(80))
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-G", "kcat-group", "-o", "beginning", "-e", "-q",
         "-f", "%s\\n", topic_name],
        capture_output=True, text=True, timeout=60)
    assert sorted(int(x) for x in out.stdout.split()) == list(range(80)), out.stderr
