"""Fetch sessions (KIP-227) with kafka-python and `runnel consume`, which keep one per broker:
after a full fetch their fetches name only partitions whose position moved, and the broker
answers only partitions with news. Every record must still arrive, in order, when the consumer changes its partitions
mid-session and when a full cache evicts its session under it."""

import os
import subprocess
import tempfile
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from conftest import BIN, Broker

SESSIONS = "kafka_server_fetchsessioncache_numincrementalfetchsessions"
CACHED = "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached"
EVICTIONS = "kafka_server_fetchsessioncache_incrementalfetchsessionevictions"


def start(*settings):
    extra = ["--set", "metrics.listeners=http://127.0.0.1:0"]
    for s in settings:
        extra += ["--set", s]
    d = tempfile.TemporaryDirectory()
    b = Broker(os.path.join(d.name, "data"), extra)
    b.tmp = d
    return b


@pytest.fixture
def sessions_broker(request):
    b = start(*getattr(request, "param", ()))
    yield b
    b.stop()
    b.tmp.cleanup()


# One cache slot whose session any newcomer may evict at once.
ONE_SLOT_EVICTED_AT_ONCE = pytest.mark.parametrize("sessions_broker", [(
    "max.incremental.fetch.session.cache.slots=1",
    "min.incremental.fetch.session.eviction.ms=0",
)], indirect=True)


def create(bootstrap, *topics, partitions=3):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    admin.close()


def produce(bootstrap, topic, partition, values):
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    for v in values:
        p.send(topic, value=v, partition=partition)
    p.flush(30)
    p.close()


def consume(consumer, want, timeout=30):
    """{(topic, partition): [values]} until `want` records came (or the timeout)."""
    got, n, deadline = {}, 0, time.monotonic() + timeout
    while n < want and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            got.setdefault((tp.topic, tp.partition), []).extend(r.value for r in records)
            n += len(records)
    return got


def values(tag, n):
    return [f"{tag}-{i}".encode() for i in range(n)]


def consumer(bootstrap, **config):
    return KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=100, **config)


def test_a_consumer_reads_everything_through_its_session_as_partitions_change(sessions_broker):
    b = sessions_broker
    create(b.bootstrap, "s1", "s2")
    c = consumer(b.bootstrap)
    c.assign([TopicPartition("s1", p) for p in range(3)])
    # Records arrive in waves on one partition at a time: the others have no news, so the
    # incremental answers leave them out.
    expected = {}
    for wave in range(4):
        p = wave % 3
        batch = values(f"s1-{p}-w{wave}", 20)
        produce(b.bootstrap, "s1", p, batch)
        expected.setdefault(("s1", p), []).extend(batch)
        got = consume(c, 20)
        assert got == {("s1", p): batch}, f"wave {wave}"
    assert b.metric(SESSIONS) == 1
    assert b.metric(CACHED) == 3

    # Forget s1-0, add s2-1, keep the rest: the session follows.
    c.assign([TopicPartition("s1", 1), TopicPartition("s1", 2), TopicPartition("s2", 1)])
    produce(b.bootstrap, "s1", 0, values("forgotten", 10))
    produce(b.bootstrap, "s1", 2, values("kept", 10))
    produce(b.bootstrap, "s2", 1, values("added", 10))
    got = consume(c, 20)
    assert got == {("s1", 2): values("kept", 10), ("s2", 1): values("added", 10)}
    time.sleep(0.5)
    assert b.metric(CACHED) == 3
    assert consume(c, 1, timeout=1) == {}, "nothing from the forgotten partition"
    c.close()


@ONE_SLOT_EVICTED_AT_ONCE
def test_consumers_whose_sessions_are_evicted_still_read_everything(sessions_broker):
    b = sessions_broker
    create(b.bootstrap, "e")
    consumers = [consumer(b.bootstrap) for _ in range(2)]
    for c in consumers:
        c.assign([TopicPartition("e", p) for p in range(3)])
    got = [{} for _ in consumers]
    for wave in range(5):
        for p in range(3):
            produce(b.bootstrap, "e", p, values(f"{wave}-{p}", 10))
        for c, g in zip(consumers, got):
            for k, v in consume(c, 30).items():
                g.setdefault(k, []).extend(v)
    for g in got:
        for p in range(3):
            assert g[("e", p)] == [v for w in range(5) for v in values(f"{w}-{p}", 10)]
    # One slot for two consumers: each full fetch evicted the other's session, whose next
    # incremental fetch got FETCH_SESSION_ID_NOT_FOUND and started over.
    assert b.metric(SESSIONS) == 1
    assert b.metric(EVICTIONS) >= 2
    for c in consumers:
        c.close()


def cli_consumer(bootstrap, topic, n):
    """`runnel consume` reading `n` records of `topic` from the beginning, as a process."""
    return subprocess.Popen([BIN, "consume", "-b", bootstrap, topic, "--from-beginning",
                             "--max-messages", str(n), "--timeout-ms", "30000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def by_wave(lines, tags):
    return {t: [v for v in lines if v.startswith(t + "-")] for t in tags}


def test_the_cli_consumer_reads_through_a_session(sessions_broker):
    b = sessions_broker
    create(b.bootstrap, "cli")
    proc = cli_consumer(b.bootstrap, "cli", 80)
    tags = [f"p{w % 3}w{w}" for w in range(4)]
    for w, tag in enumerate(tags):
        produce(b.bootstrap, "cli", w % 3, values(tag, 20))
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.split()
    assert len(lines) == 80, err
    assert by_wave(lines, tags) == {t: [v.decode() for v in values(t, 20)] for t in tags}
    # The session it made outlives it until evicted (sessionless fetches make none).
    assert b.metric(SESSIONS) == 1
    assert b.metric(CACHED) == 3


@ONE_SLOT_EVICTED_AT_ONCE
def test_the_cli_consumer_recovers_when_its_session_is_evicted(sessions_broker):
    b = sessions_broker
    create(b.bootstrap, "ev")
    proc = cli_consumer(b.bootstrap, "ev", 150)
    other = consumer(b.bootstrap)
    other.assign([TopicPartition("ev", p) for p in range(3)])
    tags = [f"p{w % 3}w{w}" for w in range(6)]
    got = {}
    for w, tag in enumerate(tags):
        produce(b.bootstrap, "ev", w % 3, values(tag, 25))
        for k, v in consume(other, 25).items():
            got.setdefault(k, []).extend(v)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.split()
    assert by_wave(lines, tags) == {t: [v.decode() for v in values(t, 25)] for t in tags}
    for p in range(3):
        assert got[("ev", p)] == [v for t in tags[p::3] for v in values(t, 25)]
    assert b.metric(EVICTIONS) >= 2
    other.close()
