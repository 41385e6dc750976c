"""Runnel as a drop-in for Kafka's images: docker/compose's files (written as Kafka's docker
examples are, with `image: runnel`) brought up with docker-compose and driven by stock clients
from the host and by the image's own `runnel` from a container on the compose network; then
brokers killed, restarted and cut off while a producer runs, and every acknowledged record read
back. Everything the suite starts is removed afterwards, also when a test fails.

Run by compat/run-tests when a Docker engine is present (compat/compose/run)."""

import json
import os
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "docker", "compose")
IMAGE = "runnel"


def sh(*cmd, timeout=120, check=True, stdin=None):
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out


def wait_for(check, timeout=60, every=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return True
        except Exception:  # a client error while brokers move is a reason to retry
            pass
        time.sleep(every)
    return False


def health(container):
    out = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", container, check=False)
    return out.stdout.strip()


class Project:
    """One compose file brought up under its own project name, torn down with its volumes."""

    def __init__(self, file, name):
        self.file = os.path.join(FILES, file)
        self.name = name
        self.network = f"{name}_default"

    def compose(self, *args, timeout=180):
        return sh("docker-compose", "-f", self.file, "-p", self.name, *args, timeout=timeout)

    def down(self):
        sh("docker-compose", "-f", self.file, "-p", self.name, "down", "-v",
           "--remove-orphans", "--timeout", "5", timeout=180, check=False)

    def run(self, *args, timeout=60, stdin=None):
        """`runnel ARGS` in a fresh container of the image on the compose network."""
        return sh("docker", "run", "--rm", "-i", "--network", self.network, IMAGE, *args,
                  timeout=timeout, stdin=stdin)

    def logs(self):
        return sh("docker-compose", "-f", self.file, "-p", self.name, "logs", "--no-color",
                  "--tail", "60", check=False).stdout


@pytest.fixture(scope="session", autouse=True)
def image():
    build = sh(os.path.join(ROOT, "docker", "build"), timeout=1800)
    print(build.stdout.strip())
    size = int(sh("docker", "image", "inspect", IMAGE, "-f", "{{.Size}}").stdout.strip())
    print(f"image size: {size / 1e6:.1f} MB")
    assert size <= 15_000_000, f"image is {size} bytes"


def start_to_healthy(container):
    """Seconds from the container's start to its first passing health check, as Docker
    recorded them."""
    state = json.loads(sh("docker", "inspect", "-f", "{{json .State}}", container).stdout)

    def ts(text):  # RFC 3339 with nanoseconds; seconds since the epoch to the microsecond
        date, frac = text.rstrip("Z").split(".")
        whole = time.mktime(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) - time.timezone
        return whole + float("0." + frac[:6])

    passed = [e for e in state["Health"]["Log"] if e["ExitCode"] == 0]
    return ts(passed[0]["End"]) - ts(state["StartedAt"])


def up(project, containers, bootstrap=None):
    project.down()
    started = time.time()
    project.compose("up", "-d")
    if bootstrap:
        # The quorum elected its leader and every broker registered and was unfenced.
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert wait_for(lambda: len(admin.list_topics(timeout=2).brokers) == len(containers)
                        and admin.list_topics(timeout=2).controller_id > 0, timeout=90, every=0.05)
        print(f"{project.name}: a controller elected and {len(containers)} brokers serving "
              f"{time.time() - started:.2f} s after compose up")
    if not wait_for(lambda: all(health(c) == "healthy" for c in containers), timeout=90):
        raise AssertionError(f"not healthy: {[health(c) for c in containers]}\n{project.logs()}")
    took = time.time() - started
    each = ", ".join(f"{c} {start_to_healthy(c):.2f} s" for c in containers)
    print(f"{project.name}: compose up to all healthy {took:.2f} s; container start to healthy: {each}")


@pytest.fixture(scope="module")
def single():
    p = Project("single-node.yml", "runnel-compat-single")
    try:
        up(p, ["broker"])
        yield p
    finally:
        p.down()


@pytest.fixture(scope="module")
def cluster():
    p = Project("three-node.yml", "runnel-compat-cluster")
    try:
        up(p, ["kafka-1", "kafka-2", "kafka-3"], CLUSTER_HOST)
        yield p
    finally:
        p.down()


def topic():
    return f"t-{uuid.uuid4().hex[:8]}"


# ---- one node -------------------------------------------------------------------------------

HOST = "localhost:9092"


def test_single_node_serves_stock_clients_from_the_host(single):
    t = topic()
    # kcat: produce, then consume to the end.
    kc = subprocess.run(["kcat", "-b", HOST, "-P", "-t", t], input="a\nb\nc\n", text=True,
                        capture_output=True, timeout=30)
    assert kc.returncode == 0, kc.stderr
    out = sh("kcat", "-b", HOST, "-C", "-t", t, "-o", "beginning", "-e", "-q", timeout=30)
    assert sorted(out.stdout.split()) == ["a", "b", "c"]
    # kcat's metadata names the broker by its host listener's endpoint.
    listing = sh("kcat", "-b", HOST, "-L", timeout=30).stdout
    assert "broker 1 at localhost:9092" in listing, listing

    # confluent-kafka: admin, produce, a consumer group that commits.
    admin = AdminClient({"bootstrap.servers": HOST})
    t2 = topic()
    admin.create_topics([NewTopic(t2, num_partitions=3, replication_factor=1)])[t2].result(30)
    p = Producer({"bootstrap.servers": HOST})
    for i in range(300):
        p.produce(t2, value=f"v{i}", key=f"k{i % 7}")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": HOST, "group.id": f"g-{t2}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([t2])
    seen = set()
    deadline = time.time() + 60
    while len(seen) < 300 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
    assert seen == {f"v{i}" for i in range(300)}

    # kafka-python: produce and read back.
    kp = KafkaProducer(bootstrap_servers=HOST, acks="all")
    for i in range(50):
        kp.send(t2, f"py{i}".encode())
    kp.flush(30)
    kp.close()
    kc = KafkaConsumer(t2, bootstrap_servers=HOST, auto_offset_reset="earliest",
                       consumer_timeout_ms=10000)
    got = {m.value.decode() for m in kc}
    kc.close()
    assert {f"py{i}" for i in range(50)} <= got


def test_single_node_serves_containers_on_the_compose_network(single):
    inside = "broker:29092"
    assert sh("docker", "run", "--rm", "--network", single.network, IMAGE, "health", "-b",
              inside).returncode == 0
    t = topic()
    single.run("topics", "create", t, "-b", inside, "-p", "2")
    listed = single.run("topics", "list", "-b", inside).stdout
    assert t in listed
    p = Producer({"bootstrap.servers": HOST})
    for i in range(20):
        p.produce(t, value=f"n{i}")
    assert p.flush(30) == 0
    single.run("produce", t, "-b", inside, stdin="".join(f"n{i}\n" for i in range(20, 40)))
    group = f"g-{t}"
    out = single.run("consume", t, "-b", inside, "--group", group, "--from-beginning",
                     "--max-messages", "40", "--timeout-ms", "15000").stdout
    assert sorted(out.split()) == sorted(f"n{i}" for i in range(40))
    desc = single.run("groups", "describe", group, "-b", inside).stdout
    assert t in desc, desc
    # The image serves its metrics listener on every interface of the container.
    report = json.loads(single.run("top", "--json", "--metrics", "broker:9644").stdout)
    assert t in [x["topic"] for x in report["topics"]], report


def test_image_defaults_and_a_volume_of_another_cluster(single):
    """With no KAFKA_* variable the image runs Kafka's stock single node, with its data in the
    declared volume; a CLUSTER_ID that disagrees with the volume stops start-up with one line."""
    volume = f"runnel-compat-{uuid.uuid4().hex[:8]}"
    name = f"{volume}-c"
    try:
        sh("docker", "volume", "create", volume)
        sh("docker", "run", "-d", "--name", name, "-v", f"{volume}:/var/lib/kafka/data",
           "-e", "CLUSTER_ID=first-cluster", IMAGE)
        assert wait_for(lambda: health(name) == "healthy", timeout=30), \
            sh("docker", "logs", name, check=False).stderr
        made = sh("docker", "exec", name, "/usr/bin/runnel", "topics", "create", "kept",
                  "-b", "localhost:9092", "-p", "1")
        assert made.returncode == 0
        sh("docker", "rm", "-f", "-v", name)
        other = sh("docker", "run", "--rm", "-v", f"{volume}:/var/lib/kafka/data",
                   "-e", "CLUSTER_ID=second-cluster", IMAGE, timeout=60, check=False)
        assert other.returncode != 0
        errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "first-cluster" in errors[0], other.stderr
        # A value Runnel cannot honour stops start-up with one line naming the key.
        ssl = sh("docker", "run", "--rm", "-e", "KAFKA_LISTENERS=SSL://:9094", IMAGE,
                 timeout=60, check=False)
        assert ssl.returncode != 0
        assert [line for line in ssl.stderr.splitlines() if line.startswith("error:")] == [
            "error: listeners: SSL uses the security protocol SSL, which Runnel does not support "
            "yet (only PLAINTEXT)"], ssl.stderr
    finally:
        sh("docker", "rm", "-f", "-v", name, check=False)
        sh("docker", "volume", "rm", "-f", volume, check=False)


# ---- three nodes ----------------------------------------------------------------------------

CLUSTER_HOST = "localhost:29092,localhost:39092,localhost:49092"
NODES = {1: "kafka-1", 2: "kafka-2", 3: "kafka-3"}


def partitions(admin, t):
    return admin.list_topics(t, timeout=10).topics[t].partitions


def test_cluster_places_a_replicated_topic(cluster):
    admin = AdminClient({"bootstrap.servers": CLUSTER_HOST})
    t = topic()
    started = time.time()
    admin.create_topics([NewTopic(t, num_partitions=6, replication_factor=3)])[t].result(30)
    assert wait_for(lambda: all(p.leader in NODES and len(p.isrs) == 3
                                for p in partitions(admin, t).values()), timeout=30)
    print(f"three nodes: a 6-partition RF=3 topic led and in sync after {time.time() - started:.2f} s")
    parts = partitions(admin, t)
    assert len(parts) == 6
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3]
        assert sorted(p.isrs) == [1, 2, 3]
    assert {p.leader for p in parts.values()} == {1, 2, 3}
    md = admin.list_topics(timeout=10)
    assert {(b.id, b.host, b.port) for b in md.brokers.values()} == {
        (1, "localhost", 29092), (2, "localhost", 39092), (3, "localhost", 49092)}
    # Inside the network the same brokers are named by their PLAINTEXT endpoints.
    status = json.loads(cluster.run("cluster", "status", "-b", "kafka-2:19092", "--json").stdout)
    assert status["leader_id"] in NODES, status


class Load:
    """An acks=all producer writing numbered records until stopped; keeps what was acked."""

    def __init__(self, t):
        self.t = t
        self.acked = set()
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        p = Producer({"bootstrap.servers": CLUSTER_HOST, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 60000,
                      "linger.ms": 5})

        def done(err, msg):
            if err is None:
                self.acked.add(msg.value().decode())

        while not self.stop.is_set():
            p.produce(self.t, value=f"r{self.sent}", on_delivery=done)
            self.sent += 1
            p.poll(0)
            time.sleep(0.005)
        p.flush(90)

    def finish(self):
        self.stop.set()
        self.thread.join(120)


def read_until(t, group, expected, seen, timeout=90):
    """Reads `t` as a member of `group` into `seen` until it holds `expected`, then commits."""
    c = Consumer({"bootstrap.servers": CLUSTER_HOST, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([t])
    deadline = time.time() + timeout
    while not expected <= seen and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
    return seen


def quorum_leader(project):
    status = json.loads(project.run("cluster", "status", "-b", "kafka-1:19092",
                                    "--json").stdout)
    return status["leader_id"]


def test_cluster_loses_no_acknowledged_record_through_kills_restarts_and_cuts(cluster):
    admin = AdminClient({"bootstrap.servers": CLUSTER_HOST})
    t = topic()
    admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[t].result(30)
    assert wait_for(lambda: all(len(p.isrs) == 3 for p in partitions(admin, t).values()))
    group = f"g-{t}"
    # What one consumer group has read, round after round: each round starts from the
    # group's committed offsets, so a gap in the union would be records skipped.
    group_seen = set()
    load = Load(t)
    time.sleep(2)

    def settle(what):
        """After a fault: every node healthy again, every partition back to three in sync,
        acknowledged records all readable, and the group continuing from its commits."""
        assert wait_for(lambda: all(health(c) == "healthy" for c in NODES.values()),
                        timeout=90), (what, cluster.logs())
        assert wait_for(lambda: all(len(p.isrs) == 3 for p in partitions(admin, t).values()),
                        timeout=90), what
        before = len(load.acked)
        assert wait_for(lambda: len(load.acked) > before + 50, timeout=60), \
            f"producer stalled after {what}"
        acked = set(load.acked)
        seen = read_until(t, f"check-{uuid.uuid4().hex[:6]}", acked, set())
        assert acked <= seen, f"{what}: {len(acked - seen)} acknowledged records missing"
        read_until(t, group, acked, group_seen)
        assert acked <= group_seen, f"{what}: the group skipped {len(acked - group_seen)}"

    # 1. kill -9 a broker, then start it again.
    sh("docker", "kill", "kafka-2")
    time.sleep(3)
    sh("docker", "start", "kafka-2")
    settle("docker kill + start of kafka-2")

    # 2. restart the node leading the controller quorum.
    leader = quorum_leader(cluster)
    sh("docker", "restart", "--time", "10", NODES[leader])
    settle(f"docker restart of the quorum leader kafka-{leader}")

    # 3. cut the leader of partition 0 off the network, then reconnect it.
    cut = partitions(admin, t)[0].leader
    sh("docker", "network", "disconnect", cluster.network, NODES[cut])
    # Fenced after broker.session.timeout.ms without heartbeats; the others lead partition 0.
    assert wait_for(lambda: partitions(admin, t)[0].leader not in (cut, -1), timeout=60), \
        f"partition 0 still led by the cut-off kafka-{cut}"
    time.sleep(2)
    sh("docker", "network", "connect", "--alias", NODES[cut], cluster.network, NODES[cut])
    settle(f"network disconnect + connect of kafka-{cut}")

    load.finish()
    acked = set(load.acked)
    assert len(acked) > 500, f"only {len(acked)} acknowledged of {load.sent}"
    seen = read_until(t, f"check-{uuid.uuid4().hex[:6]}", acked, set())
    assert acked <= seen, f"{len(acked - seen)} acknowledged records lost"
    print(f"faults: {len(acked)} records acknowledged of {load.sent} sent, none lost")
