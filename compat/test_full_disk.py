"""A broker whose log directory fills up, through confluent-kafka (librdkafka): produce gets
KAFKA_STORAGE_ERROR, reads of what was acknowledged keep working, and writes resume by
themselves once space returns; librdkafka's own retries (KAFKA_STORAGE_ERROR is retriable)
carry a producer across the full spell. The data directory is a small tmpfs the test mounts
(needs root, as CI and the dev machines run)."""

import contextlib
import os
import subprocess
import tempfile
import threading
import time

import pytest
from conftest import FAST_GROUPS, Broker, Cluster, produce_values, read_partition
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

TOPIC = "filling"


@contextlib.contextmanager
def mounted_tmpfs(mnt):
    # Room for the metadata quorum's two reserves (8 MiB each) and some data.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


@pytest.fixture
def tmpfs():
    with tempfile.TemporaryDirectory() as mnt, mounted_tmpfs(mnt):
        yield mnt


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
        outcome = produce_values(broker.bootstrap, TOPIC, values, **no_retries)
        refused = [v for v, err in outcome.items() if err is not None]
        acked = [v for v in values if outcome[v] is None]
        assert refused, "some records must be refused on a full disk"
        assert {outcome[v].code() for v in refused} == {KafkaError.KAFKA_STORAGE_ERROR}

        # Reads of everything acknowledged keep working, and the broker answers metadata.
        assert read_partition(broker.bootstrap, TOPIC) == acked
        assert TOPIC in a.list_topics(timeout=10).topics
        # The metadata quorum shares the file system and writes on: a topic created now
        # either is created (its empty files need no space) or fails with
        # KAFKA_STORAGE_ERROR and is rolled back; either way the broker stays registered.
        try:
            a.create_topics([NewTopic("made-while-full", 1, 1)])["made-while-full"].result(
                timeout=20)
        except Exception as e:
            assert e.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e
        assert read_partition(broker.bootstrap, TOPIC) == acked

        # A producer with librdkafka's default retries keeps trying; space returns while it
        # does, and its records land with nothing lost, doubled or reordered.
        later = [b"later-%d" % i for i in range(20)]
        result = {}
        t = threading.Thread(target=lambda: result.update(
            produce_values(broker.bootstrap, TOPIC, later, acks="all", **{"message.timeout.ms": 60000})))
        t.start()
        time.sleep(3)
        os.remove(filler)
        t.join(90)
        assert result and all(err is None for err in result.values()), result
        assert read_partition(broker.bootstrap, TOPIC) == acked + later

        # Nothing was left corrupt: a restart serves exactly the same records.
        broker.stop()
        broker = Broker(data, FAST_GROUPS)
        assert read_partition(broker.bootstrap, TOPIC) == acked + later
    finally:
        broker.stop()


def test_the_metadata_quorum_snapshots_and_purges_on_a_full_disk(tmpfs):
    """A snapshot of the metadata log (every 1,000 entries) and the purge after it write new
    files; on a full disk either used to be fatal to the Raft library, taking the broker's
    registration with it. The quorum's reserve keeps them working."""
    data = os.path.join(tmpfs, "data")
    meta = os.path.join(data, "__cluster_metadata-0")
    broker = Broker(data, FAST_GROUPS)
    try:
        a = AdminClient({"bootstrap.servers": broker.bootstrap})
        a.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(timeout=20)
        acked = [b"before-%d" % i for i in range(10)]
        assert all(e is None for e in produce_values(broker.bootstrap, TOPIC, acked).values())
        fill(os.path.join(tmpfs, "filler"))
        before = os.stat(os.path.join(meta, "snapshot")).st_mtime if os.path.exists(
            os.path.join(meta, "snapshot")) else 0

        # Each topic created or deleted is an entry of the metadata log: 2,400 of them cross
        # the snapshot threshold twice while the disk stays full.
        names = [f"meta-{i}" for i in range(1200)]
        for i in range(0, len(names), 200):
            for f in a.create_topics([NewTopic(n, 1, 1) for n in names[i:i + 200]]).values():
                try:
                    f.result(timeout=60)
                except Exception as e:
                    assert e.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e
        for i in range(0, len(names), 200):
            for f in a.delete_topics(names[i:i + 200], operation_timeout=60).values():
                try:
                    f.result(timeout=60)
                except Exception as e:
                    assert e.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, e
        assert os.path.getmtime(os.path.join(meta, "snapshot")) > before, "a snapshot was written"

        # The quorum is alive: the broker is registered, answers, and serves what it had.
        md = a.list_topics(timeout=20)
        assert list(md.brokers) and TOPIC in md.topics
        assert not set(names) & set(md.topics)
        assert read_partition(broker.bootstrap, TOPIC) == acked

        # Space returns: writes resume, and a restart replays the same metadata.
        os.remove(os.path.join(tmpfs, "filler"))
        a.create_topics([NewTopic("after", 1, 1)])["after"].result(timeout=30)
        broker.stop()
        broker = Broker(data, FAST_GROUPS)
        a = AdminClient({"bootstrap.servers": broker.bootstrap})
        topics = set(a.list_topics(timeout=20).topics)
        assert {TOPIC, "after"} <= topics and not set(names) & topics
        assert read_partition(broker.bootstrap, TOPIC) == acked
    finally:
        broker.stop()


def test_a_follower_with_a_full_disk_leaves_the_isr_and_catches_up_when_space_returns():
    """Replicated: node 3's data directory fills. It cannot append what it fetches, so the
    leader drops it from the ISR and acks=all goes on with the other two (min.insync.replicas
    2), or gets NOT_ENOUGH_REPLICAS where 3 are required; once space returns node 3 catches up
    and rejoins, and a new leader serves every acknowledged record."""
    with tempfile.TemporaryDirectory() as root:
        third = os.path.join(root, "node3")
        os.makedirs(third)
        with mounted_tmpfs(third):
            cluster = Cluster(root, extra=["--set", "replica.lag.time.max.ms=2000"])
            try:
                bootstrap = cluster.nodes[0].bootstrap
                a = AdminClient({"bootstrap.servers": bootstrap})
                topic = NewTopic("replicated", num_partitions=1, replica_assignment=[[1, 2, 3]],
                                 config={"min.insync.replicas": "2"})
                a.create_topics([topic])["replicated"].result(timeout=30)

                def isr():
                    md = a.list_topics("replicated", timeout=10)
                    return sorted(md.topics["replicated"].partitions[0].isrs)

                def wait_isr(want):
                    deadline = time.monotonic() + 60
                    while isr() != want:
                        assert time.monotonic() < deadline, f"ISR {isr()}, not {want}"
                        time.sleep(0.2)

                wait_isr([1, 2, 3])
                acks_all = {"acks": "all", "message.timeout.ms": 60000}
                acked = [b"before-%d" % i for i in range(20)]
                assert all(e is None for e in produce_values(
                    bootstrap, "replicated", acked, **acks_all).values())

                fill(os.path.join(third, "filler"))
                during = [b"during-%d-" % i + b"." * 4000 for i in range(200)]
                outcome = produce_values(bootstrap, "replicated", during, **acks_all)
                assert all(e is None for e in outcome.values()), outcome
                acked += during
                wait_isr([1, 2])

                def min_isr(n):
                    r = ConfigResource(ResourceType.TOPIC, "replicated",
                                       set_config={"min.insync.replicas": str(n)})
                    a.alter_configs([r])[r].result(timeout=20)

                min_isr(3)
                err = produce_values(bootstrap, "replicated", [b"refused"], acks="all",
                                     retries=0, **{"enable.idempotence": False})[b"refused"]
                assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
                min_isr(2)

                os.remove(os.path.join(third, "filler"))
                wait_isr([1, 2, 3])
                # Node 1 stops; node 2 or 3 leads and serves all of it.
                cluster.nodes[0].terminate()
                bootstrap = cluster.nodes[1].bootstrap
                a = AdminClient({"bootstrap.servers": bootstrap})
                got = read_partition(bootstrap, "replicated")
                assert [v for v in got if v != b"refused"] == acked
            finally:
                cluster.stop()
