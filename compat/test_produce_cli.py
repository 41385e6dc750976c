"""`runnel produce` against stock clients: keys, values and headers as kcat and confluent-kafka
read them, partitions picked by key exactly as a Java-compatible partitioner picks them
(librdkafka's murmur2_random), `--partition`, `--acks 0` and `--file`, and a round trip with
`runnel consume`."""

import os
import subprocess

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BIN = os.environ.get("RUNNEL_BIN")


def runnel(*args, stdin=None):
    out = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def create(broker, topic, partitions):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result(timeout=20)


def read(broker, topic, n):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"read-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    for _ in range(200):
        if len(out) >= n:
            break
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append(m)
    c.close()
    return out


def test_keys_values_and_headers_reach_kcat_and_confluent_kafka(broker, topic_name):
    create(broker, topic_name, 3)
    lines = "".join(f"key{i}:value {i}\n" for i in range(30))
    printed = runnel("produce", topic_name, "-b", broker.bootstrap, "--key-separator", ":",
                     "-H", "source=cli", "-H", "n=1", "--print-offsets", stdin=lines)
    assert len(printed.split()) == 30 and all(w.startswith(f"{topic_name}-") for w in printed.split())
    kc = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-q",
                         "-f", "%k|%s|%h\n"], capture_output=True, text=True, timeout=30)
    got = sorted(kc.stdout.splitlines())
    assert got == sorted(f"key{i}|value {i}|source=cli,n=1" for i in range(30)), kc.stderr
    msgs = read(broker, topic_name, 30)
    assert all(m.headers() == [("source", b"cli"), ("n", b"1")] for m in msgs)
    # Each record's printed place is where it is.
    placed = {f"{topic_name}-{m.partition()}@{m.offset()}" for m in msgs}
    assert placed == set(printed.split())


def test_keys_land_where_a_java_compatible_partitioner_puts_them(broker, topic_name):
    ours, theirs = f"{topic_name}-cli", f"{topic_name}-rdk"
    create(broker, ours, 7)
    create(broker, theirs, 7)
    keys = [f"user-{i}" for i in range(100)] + ["", "a", "ab", "abc", "ünïcode"]
    runnel("produce", ours, "-b", broker.bootstrap, "--key-separator", "\t",
           stdin="".join(f"{k}\t{k}\n" for k in keys))
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce(theirs, key=k.encode(), value=k.encode())
    assert p.flush(20) == 0
    where = {}
    for topic in (ours, theirs):
        where[topic] = {m.key().decode(): m.partition() for m in read(broker, topic, len(keys))}
    assert len(where[ours]) == len(keys)
    assert where[ours] == where[theirs]


def test_partition_acks_zero_file_and_a_round_trip_with_runnel_consume(broker, topic_name, tmp_path):
    create(broker, topic_name, 4)
    runnel("produce", topic_name, "-b", broker.bootstrap, "-p", "3", "--acks", "0",
           stdin="".join(f"z{i}\n" for i in range(20)))
    records = tmp_path / "records.txt"
    records.write_text("".join(f"f{i}\n" for i in range(20)))
    runnel("produce", topic_name, "-b", broker.bootstrap, "-p", "1", "-f", str(records))
    msgs = read(broker, topic_name, 40)
    assert {m.value().decode() for m in msgs if m.partition() == 3} == {f"z{i}" for i in range(20)}
    assert [m.value().decode() for m in msgs if m.partition() == 1] == [f"f{i}" for i in range(20)]
    out = runnel("consume", topic_name, "-b", broker.bootstrap, "--from-beginning",
                 "--max-messages", "40", "--timeout-ms", "10000")
    assert sorted(out.split()) == sorted([f"z{i}" for i in range(20)] + [f"f{i}" for i in range(20)])
    bad = subprocess.run([BIN, "produce", topic_name, "-b", broker.bootstrap, "--key-separator",
                          ":"], input="no separator here\n", capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 1 and "line 1 has no key separator" in bad.stderr
