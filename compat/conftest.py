"""Starts the real runnel binary on 127.0.0.1:0 for each test module, alone or as a
three-node cluster (each node a broker and a voter of the controller quorum)."""

import os
import pathlib
import subprocess
import tempfile
import time
import uuid

import pytest

from ports import free_port  # re-exported to the tests

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("RUNNEL_BIN", str(ROOT / "target" / "debug" / "runnel"))


# Group settings that keep tests quick: a short initial rebalance delay, a low session floor.
FAST_GROUPS = [
    "--set", "group.initial.rebalance.delay.ms=300",
    "--set", "group.min.session.timeout.ms=1000",
]


class Broker:
    def __init__(self, data_dir, extra=()):
        self.data_dir = data_dir
        self.extra = list(extra)
        self._start()

    def kill9_and_restart(self):
        """SIGKILL, then start again on the same data (on a new port)."""
        self.proc.kill()
        self.proc.wait(timeout=20)
        self._start()

    def _start(self):
        data_dir, extra = self.data_dir, self.extra
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data", data_dir, *extra],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, "RUNNEL_LOG": "warn"},
        )
        line = self.proc.stdout.readline()
        if not line.startswith("runnel listening on "):
            self.proc.kill()
            raise RuntimeError(f"runnel did not start: {line!r}")
        self.bootstrap = line.split()[3]
        # Set when the broker serves /metrics (`metrics.listeners`): host:port.
        self.metrics = (line.split("metrics on http://")[1].strip().rstrip(")")
                        if "metrics on http://" in line else None)

    def metric(self, name):
        """The value of an unlabelled metric from /metrics."""
        import urllib.request
        with urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "_total "):
                    return float(line.split()[-1])
        raise KeyError(name)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def produce_values(bootstrap, topic, values, partition=0, **config):
    """Produces `values` (bytes) to one partition through librdkafka; returns
    {value: delivery error or None}."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **config})
    outcome = {}
    for v in values:
        p.produce(topic, value=v, partition=partition,
                  on_delivery=lambda err, msg, v=v: outcome.__setitem__(v, err))
        p.poll(0)
    assert p.flush(60) == 0
    return outcome


def read_partition(bootstrap, topic, partition=0):
    """Every value in one partition, up to its high watermark, in order."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                  "enable.auto.commit": False})
    _, end = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=20)
    c.assign([TopicPartition(topic, partition, 0)])
    got, deadline = [], time.monotonic() + 60
    while len(got) < end and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


@pytest.fixture(scope="module")
def broker():
    with tempfile.TemporaryDirectory() as d:
        b = Broker(os.path.join(d, "data"), FAST_GROUPS)
        yield b
        b.stop()


@pytest.fixture
def topic_name():
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def private_broker():
    """A broker of the test's own, for tests that kill and restart it."""
    with tempfile.TemporaryDirectory() as d:
        b = Broker(os.path.join(d, "data"), FAST_GROUPS)
        yield b
        b.stop()


class ClusterNode:
    def __init__(self, node_id, data_dir, voters, client_port, controller_port, extra=()):
        self.node_id = node_id
        self.bootstrap = f"127.0.0.1:{client_port}"
        self.args = [
            BIN, "serve", "--data", data_dir,
            "--set", f"node.id={node_id}",
            "--set", f"listeners=PLAINTEXT://127.0.0.1:{client_port},CONTROLLER://127.0.0.1:{controller_port}",
            "--set", f"controller.quorum.voters={voters}",
            *FAST_GROUPS,
            *extra,
        ]
        self.proc = None

    def spawn(self):
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=None, text=True,
            env={**os.environ, "RUNNEL_LOG": "warn,openraft=off"},
        )

    def wait_ready(self):
        line = self.proc.stdout.readline()
        if not line.startswith("runnel listening on "):
            self.proc.kill()
            raise RuntimeError(f"node {self.node_id} did not start: {line!r}")

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=20)

    def terminate(self):
        """SIGTERM: a controlled shutdown (leaderships move before the process exits)."""
        self.proc.terminate()
        self.proc.wait(timeout=20)


class Cluster:
    """Three nodes started together (a quorum needs a majority before any node is ready)."""

    def __init__(self, root, n=3, extra=()):
        ports = [(free_port(), free_port()) for _ in range(n)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        self.nodes = [
            ClusterNode(i + 1, os.path.join(root, f"node{i + 1}"), voters, p, c, extra)
            for i, (p, c) in enumerate(ports)
        ]
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            node.wait_ready()

    def stop(self):
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            try:
                node.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.proc.kill()


@pytest.fixture(scope="module")
def cluster():
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(d)
        yield c
        c.stop()
