"""Starts the real runnel binary on 127.0.0.1:0 for each test module."""

import os
import pathlib
import subprocess
import tempfile
import uuid

import pytest

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

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


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
