"""kcat (Debian's, librdkafka 2.0) against Runnel: metadata, produce, consume, query by time."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by compat/run-tests")


def kcat(broker, *args, stdin=None):
    r = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_produce_consume_every_codec(broker, topic_name):
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        kcat(broker, "-P", "-t", topic_name, "-z", codec, "-K:", stdin="".join(f"k{i}:{codec}-{i}\n" for i in range(20)))
    out = kcat(broker, "-C", "-t", topic_name, "-e", "-o", "beginning", "-f", "%o %k %s\n")
    lines = out.splitlines()
    assert len(lines) == 100
    assert [int(l.split()[0]) for l in lines] == list(range(100))
    assert lines[25].split()[1:] == ["k5", "gzip-5"]


def test_metadata_and_query(broker, topic_name):
    kcat(broker, "-P", "-t", topic_name, stdin="a\nb\nc\n")
    md = kcat(broker, "-L", "-t", topic_name)
    assert f'topic "{topic_name}" with 1 partitions' in md
    assert "leader 1, replicas: 1, isrs: 1" in md
    end = kcat(broker, "-Q", "-t", f"{topic_name}:0:-1")
    assert f"{topic_name} [0] offset 3" in end
