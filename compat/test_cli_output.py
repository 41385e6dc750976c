"""The command line as a shell user meets it: every command ends quietly when the reader of its
output goes away (`| head`), and long operations show progress on a terminal only."""

import os
import pty
import subprocess
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

BIN = os.environ.get("RUNNEL_BIN")


def fill(broker, topic, n, partitions=1):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result(timeout=20)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode())
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def piped_to_head(args):
    """Runs `runnel ARGS | head -1`; returns runnel's exit code, stderr and head's line."""
    runnel = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=runnel.stdout, capture_output=True, text=True,
                          timeout=30)
    runnel.stdout.close()
    code = runnel.wait(timeout=30)
    return code, runnel.stderr.read().decode(), head.stdout


def test_commands_end_quietly_when_their_reader_goes(broker, topic_name):
    fill(broker, topic_name, 20000)
    for args in (["configs", "describe", "--topic", topic_name],
                 ["configs", "describe", "--broker"],
                 ["topics", "list"],
                 ["offsets", topic_name],
                 ["consume", topic_name, "--from-beginning"]):
        code, err, line = piped_to_head([*args, "-b", broker.bootstrap])
        assert line, args
        assert code == 0, (args, code, err)
        assert "panicked" not in err and "error" not in err.lower(), (args, err)


def run_with_terminal_stderr(args, stdout):
    """Runs runnel with stderr on a pseudo-terminal; returns what it drew there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([BIN, *args], stdout=stdout, stderr=follower)
    os.close(follower)
    drawn = b""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    assert proc.wait(timeout=60) == 0, drawn
    os.close(leader)
    return drawn.decode(errors="replace")


def test_progress_on_a_terminal_and_never_in_a_pipe(broker, topic_name, tmp_path):
    fill(broker, topic_name, 50000)
    args = ["consume", topic_name, "-b", broker.bootstrap, "--from-beginning",
            "--max-messages", "50000", "--timeout-ms", "20000"]
    out = tmp_path / "records.txt"
    with open(out, "w") as f:
        drawn = run_with_terminal_stderr(args, f)
    assert len(out.read_text().splitlines()) == 50000
    assert "consumed" in drawn and "/50000" in drawn, drawn
    assert "Processed a total of 50000 messages" in drawn
    piped = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert "consumed" not in piped.stderr and "\r" not in piped.stderr, piped.stderr

    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    names = [f"{topic_name}-d{i}" for i in range(5)]
    for f in a.create_topics([NewTopic(n, num_partitions=1, replication_factor=1)
                              for n in names]).values():
        f.result(timeout=20)
    with open(tmp_path / "deleted.txt", "w") as f:
        drawn = run_with_terminal_stderr(["topics", "delete", "-b", broker.bootstrap, *names], f)
    assert (tmp_path / "deleted.txt").read_text().splitlines() == [f"Deleted topic {n}" for n in names]
    assert "deleted" in drawn and "/5" in drawn, drawn
