"""Power cuts under durable acks: the broker's whole data directory (logs, consumer offsets,
metadata quorum) on lazyfs.py, where data not fsynced lives only in memory and names not
fsynced into their directory are undone, with
`log.flush.interval.messages=1` (Kafka's flush.messages=1: acks only once fsynced). Each
cycle kills the broker with SIGKILL at a random moment under an idempotent acks=all producer
and a committing consumer, then kills the file system too, so everything not fsynced is lost,
and starts both again. Nothing acknowledged may be lost, nothing stored twice, and committed
offsets never go backwards."""

import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import BIN, FAST_GROUPS, free_port, produce_values, read_partition
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "durable"
CYCLES = 12

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse here")


class LazyMount:
    """lazyfs.py over `backing` at `mountpoint`; `power_cut` loses what was not fsynced."""

    def __init__(self, backing, mountpoint):
        self.backing, self.mountpoint = backing, mountpoint
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "lazyfs.py"),
                                      self.backing, self.mountpoint],
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            assert self.proc.poll() is None, "lazyfs.py exited"
            assert time.monotonic() < deadline, "lazyfs.py did not mount"
            time.sleep(0.05)

    def power_cut(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        subprocess.run(["fusermount", "-u", "-z", self.mountpoint], check=False)

    def stop(self):
        self.power_cut()


class DurableBroker:
    def __init__(self, data, port):
        self.args = [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data", data,
                     "--set", "log.flush.interval.messages=1",
                     # Small segments: cuts land around rolls, whose new files' names last
                     # only once their directory is fsynced.
                     "--set", "log.segment.bytes=16384", *FAST_GROUPS]
        self.bootstrap = f"127.0.0.1:{port}"
        self.start()

    def start(self):
        for _ in range(50):
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "RUNNEL_LOG": "error"})
            line = self.proc.stdout.readline()
            if line.startswith("runnel listening on "):
                return
            self.proc.wait()
            time.sleep(0.1)  # the port may still be held by the killed process
        raise RuntimeError(f"runnel did not start: {line!r}")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def durable():
    """(lazyfs mount, its backing directory, a durable broker on it with TOPIC of 2
    partitions)."""
    with tempfile.TemporaryDirectory() as tmp:
        backing, mnt = os.path.join(tmp, "disk"), os.path.join(tmp, "mnt")
        os.makedirs(backing)
        os.makedirs(mnt)
        fs = LazyMount(backing, mnt)
        broker = DurableBroker(os.path.join(mnt, "data"), free_port())
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            admin.create_topics([NewTopic(TOPIC, 2, 1)])[TOPIC].result(timeout=30)
            del admin
            yield fs, backing, broker
        finally:
            broker.kill9()
            fs.stop()


def test_power_cuts_lose_nothing_acknowledged_with_durable_acks(durable):
    fs, _, broker = durable
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    client = {"bootstrap.servers": broker.bootstrap, "reconnect.backoff.ms": 20,
              "reconnect.backoff.max.ms": 300, "retry.backoff.ms": 20}
    acked, failed = [], []

    def delivered(err, msg):
        (failed if err else acked).append(
            (msg.partition(), int(msg.value())) if not err else str(err))

    producer = Producer({**client, "enable.idempotence": True,
                         "message.timeout.ms": 300000, "linger.ms": 2})
    consumer = Consumer({**client, "group.id": "durable-group",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000})
    consumer.subscribe([TOPIC])
    committed = {}
    sent = 0
    for cycle in range(CYCLES):
        until = time.monotonic() + rng.uniform(0.5, 2.5)
        while time.monotonic() < until:
            producer.produce(TOPIC, value=str(sent).encode(), partition=sent % 2,
                             on_delivery=delivered)
            sent += 1
            producer.poll(0.005)
            m = consumer.poll(0.005)
            if m is not None and not m.error() and sent % 25 == 0:
                try:
                    offsets = consumer.commit(asynchronous=False)
                    for tp in offsets or []:
                        committed[tp.partition] = max(committed.get(tp.partition, 0),
                                                      tp.offset)
                except Exception:
                    pass  # a commit the kill cut short: neither counted nor checked
        broker.kill9()
        fs.power_cut()
        fs.start()
        broker.start()
    assert producer.flush(120) == 0, "every record resolved"
    consumer.close()

    check = Consumer({**client, "group.id": "durable-group", "enable.auto.commit": False})
    now = check.committed([TopicPartition(TOPIC, p) for p in range(2)], timeout=20)
    check.close()
    for tp in now:
        assert tp.offset >= committed.get(tp.partition, 0), (
            f"seed {seed}: partition {tp.partition} committed offset went back from "
            f"{committed.get(tp.partition)} to {tp.offset}")
    stored = {p: [int(v) for v in read_partition(broker.bootstrap, TOPIC, p)]
              for p in range(2)}
    everything = [v for vs in stored.values() for v in vs]
    lost = [(p, v) for p, v in acked if v not in set(stored[p])]
    print(f"{CYCLES} power cuts: {sent} sent, {len(acked)} acknowledged, "
          f"{len(failed)} failed, {len(everything)} stored, {len(lost)} lost, "
          f"{len(everything) - len(set(everything))} duplicates; committed {committed}")
    assert not failed, f"seed {seed}: {failed[:5]}"
    assert not lost, f"seed {seed}: acknowledged but lost: {lost[:20]}"
    assert len(everything) == len(set(everything)), f"seed {seed}: duplicates"
    for p, vs in stored.items():
        assert vs == sorted(vs), f"seed {seed}: partition {p} out of order"
    assert len(acked) == sent and committed, f"seed {seed}: no progress"


def test_an_fsync_error_takes_the_log_directory_offline(durable):
    """Kafka's answer to a failed fsync: the data may be gone, so the directory goes offline
    and nothing more is acknowledged from it, even once fsync works again; a restart serves
    everything acknowledged before."""
    _, backing, broker = durable
    no_retries = {"acks": "all", "enable.idempotence": False, "retries": 0}

    def produce(values):
        return produce_values(broker.bootstrap, TOPIC, values, **no_retries)

    before = [b"before-%d" % i for i in range(10)]
    assert all(e is None for e in produce(before).values())
    trigger = os.path.join(backing, ".fail-fsync")
    open(trigger, "w").close()
    failed = produce([b"while-failing"])[b"while-failing"]
    assert failed is not None and failed.code() == KafkaError.KAFKA_STORAGE_ERROR
    os.remove(trigger)
    still = produce([b"after-failing"])[b"after-failing"]
    assert still is not None and still.code() == KafkaError.KAFKA_STORAGE_ERROR, (
        "an offline directory stays offline until a restart")

    broker.kill9()
    broker.start()
    assert read_partition(broker.bootstrap, TOPIC)[:len(before)] == before
    assert all(e is None for e in produce([b"after-restart"]).values())


def test_lazyfs_undoes_names_whose_directory_was_not_fsynced():
    """The harness itself: a file fsynced into a directory never fsynced is gone after a cut,
    as are a rename and an unlink not fsynced; fsynced data and names stay."""
    with tempfile.TemporaryDirectory() as tmp:
        backing, mnt = os.path.join(tmp, "disk"), os.path.join(tmp, "mnt")
        os.makedirs(backing)
        os.makedirs(mnt)
        fs = LazyMount(backing, mnt)
        try:
            def write(name, data, sync_dir):
                with open(os.path.join(mnt, name), "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if sync_dir:
                    fsync_dir(mnt)

            def fsync_dir(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

            write("kept", b"kept", sync_dir=True)
            write("old", b"old", sync_dir=True)
            write("lost", b"lost", sync_dir=False)
            os.rename(os.path.join(mnt, "kept"), os.path.join(mnt, "renamed"))
            os.unlink(os.path.join(mnt, "old"))
            with open(os.path.join(mnt, "renamed"), "ab") as f:
                f.write(b" and unsynced")
            fs.power_cut()
            fs.start()
            assert sorted(os.listdir(mnt)) == ["kept", "old"]
            with open(os.path.join(mnt, "kept"), "rb") as f:
                assert f.read() == b"kept"

            os.rename(os.path.join(mnt, "kept"), os.path.join(mnt, "old"))
            fsync_dir(mnt)
            fs.power_cut()
            fs.start()
            assert os.listdir(mnt) == ["old"]
            with open(os.path.join(mnt, "old"), "rb") as f:
                assert f.read() == b"kept"
        finally:
            fs.stop()
