"""Free ports for brokers the tests and benches start on fixed ports (clusters, restarts)."""

import os
import socket

_next_port = [os.getpid() * 131]


def free_port():
    """A free port below the kernel's ephemeral range (32768 and up), where no outgoing
    connection's source port can take it before the broker binds it."""
    for _ in range(12768):
        port = 20000 + _next_port[0] % 12768
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port between 20000 and 32767")
