"""Starting runnel for the bench scripts: its command line, the wait for its "runnel listening
on" line, free ports, and the /proc figures the scripts report. Every wait is bounded by the
broker writing that line or exiting."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compat"))
from ports import free_port  # noqa: E402  (the scripts take it from here)

__all__ = ["cpu_seconds", "free_port", "ready", "rss_mib", "serve", "spawn"]


def spawn(binary, args, log="error,openraft=off", stderr=subprocess.DEVNULL):
    """`runnel serve ARGS`, its stdout piped for `ready`."""
    return subprocess.Popen([binary, "serve", *args], stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env={**os.environ, "RUNNEL_LOG": log})


def ready(proc):
    """Waits for the broker's first line; its client address."""
    line = proc.stdout.readline()
    assert line.startswith("runnel listening on "), line
    return line.split()[3]


def serve(binary, data, settings=(), listen="127.0.0.1:0", **spawn_args):
    """A single broker on `listen` with data in `data`, /metrics off unless `settings` set
    it; (process, bootstrap address) once it serves."""
    args = ["--listen", listen, "--data", data, "--set", "metrics.listeners="]
    for s in settings:
        args += ["--set", s]
    proc = spawn(binary, args, **spawn_args)
    return proc, ready(proc)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
