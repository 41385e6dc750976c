"""A wire fuzzer for the broker: record what real clients send, mutate it, fire it at the broker
over many connections at once, and check that the broker keeps serving a well-behaved client,
shuts down cleanly, never panics, and still holds every record it acknowledged to that client.

1. Record: a proxy in front of a fresh broker (advertised as the proxy, so clients stay on it)
   keeps every request frame while librdkafka (confluent-kafka), kafka-python, kcat and the
   runnel CLI create, describe, alter and delete topics, produce with every codec, consume in
   groups, commit and list offsets.
2. Fuzz: each of --connections connections sends a few mutated frames (bit flips, interesting
   int16/int32/int64/varint values, lengths, truncation, insertion, deletion, splices of two
   frames, another API key or version, sizes that lie), pipelined, reads what comes back for
   a short while, and reconnects when the broker closes it. A probe meanwhile produces (acks=all,
   idempotent) and reads back one record at a time, and asks ApiVersions on a fresh socket.
3. Check: the probe never failed; the broker is alive, stops on SIGTERM within 30 s with exit
   status 0, and its log has no panic; restarted on the same data it serves every acknowledged
   probe record.

For people: `python3 compat/wire_fuzz.py --seconds 600` (RUNNEL_BIN picks the binary; --seed
repeats a run's mutations, though not their interleaving). CI runs test_wire_fuzz.py, bounded.
"""

import argparse
import asyncio
import collections
import os
import pathlib
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.environ.get("RUNNEL_BIN", str(ROOT / "target" / "debug" / "runnel"))

PROBE_TOPIC = "fuzz-probe"
# How long the probe may take for one record (produce acknowledged and read back).
PROBE_DEADLINE = 15.0
# Mutated CreateTopics/CreatePartitions ask for anything up to two billion partitions: the
# budget keeps the ones that succeed to what a test machine's disk and the probe can live with.
BROKER_SETTINGS = ["max.broker.partitions=3000", "group.initial.rebalance.delay.ms=300",
                   "group.min.session.timeout.ms=1000"]


class Recorder:
    """A TCP proxy that keeps every request frame clients send through it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.frames = []
        self.recording = True
        self.upstream = None

    def start(self, upstream):
        self.upstream = upstream
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()

    async def _serve(self):
        server = await asyncio.start_server(self._client, sock=self.sock)
        async with server:
            await server.serve_forever()

    async def _client(self, client_r, client_w):
        host, port = self.upstream.rsplit(":", 1)
        try:
            broker_r, broker_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._requests(client_r, broker_w, client_w),
                             self._pipe(broker_r, client_w, broker_w), return_exceptions=True)

    async def _requests(self, r, w, other):
        try:
            while True:
                size = await r.readexactly(4)
                body = await r.readexactly(struct.unpack(">i", size)[0])
                if self.recording:
                    self.frames.append(body)
                w.write(size + body)
                await w.drain()
        finally:
            w.close()
            other.close()

    async def _pipe(self, r, w, other):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        finally:
            w.close()
            other.close()


class Broker:
    """The runnel binary on 127.0.0.1:0, its log kept in a file for the panic check."""

    def __init__(self, data_dir, log_path, advertise=None):
        self.data_dir, self.log_path, self.advertise = data_dir, log_path, advertise
        self.start()

    def start(self):
        args = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", self.data_dir]
        if self.advertise:
            args += ["--advertise", self.advertise]
        for s in BROKER_SETTINGS:
            args += ["--set", s]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, "RUNNEL_LOG": "warn"})
        line = self.proc.stdout.readline()
        if not line.startswith("runnel listening on "):
            self.proc.kill()
            raise RuntimeError(f"runnel did not start: {line!r}")
        self.address = line.split()[3]

    def stop(self, grace=30):
        """SIGTERM; the exit status, or None if it had to be killed."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.log.close()

    def panics(self):
        with open(self.log_path, errors="replace") as f:
            return [line.rstrip() for line in f if "panicked" in line]


def attempt(what, fn, failures):
    try:
        fn()
    except Exception as e:  # a client step that fails still leaves its frames behind
        failures.append(f"{what}: {e!r}")


def drive_confluent(bootstrap, prefix, failures):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, NewPartitions, NewTopic, OffsetSpec,
                                       ResourceType)
    a = AdminClient({"bootstrap.servers": bootstrap})
    topic, doomed = f"{prefix}-ck", f"{prefix}-ck-doomed"

    def done(futures):
        for f in futures.values():
            f.result(timeout=20)

    def topics():
        done(a.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"}),
                              NewTopic(doomed, 1, 1, config={"cleanup.policy": "compact"})]))
        done(a.create_topics([NewTopic(f"{prefix}-dry", 2, 1)], validate_only=True))
        done(a.create_partitions([NewPartitions(topic, 4)]))

    def configs():
        res = ConfigResource(ResourceType.TOPIC, topic)
        done(a.describe_configs([res, ConfigResource(ResourceType.BROKER, "1")]))
        done(a.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, topic, incremental_configs=[
                ConfigEntry("retention.bytes", "100000000",
                            incremental_operation=AlterConfigOpType.SET)])]))
        with warnings.catch_warnings():  # deprecated, and still what older clients send
            warnings.simplefilter("ignore")
            done(a.alter_configs([ConfigResource(ResourceType.TOPIC, doomed,
                                                  set_config={"segment.bytes": "1048576"})]))

    def produce():
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                          "enable.idempotence": True, "linger.ms": 5})
            for i in range(10):
                p.produce(topic, key=f"k{i}".encode(), value=f"{codec}-{i}".encode() * 8,
                          headers=[("h", b"v")])
                p.produce(doomed, key=f"k{i % 3}".encode(), value=b"v")
            if p.flush(20):
                raise RuntimeError(f"{codec}: records left undelivered")

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-ck-group",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        got, deadline = 0, time.monotonic() + 20
        while got < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.commit(asynchronous=False)
        c.committed([TopicPartition(topic, 0)], timeout=10)
        c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10)
        c.offsets_for_times([TopicPartition(topic, 0, int(time.time() * 1000) - 60000)], timeout=10)
        c.close()

    def admin_rest():
        done(a.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest(),
                             TopicPartition(topic, 1): OffsetSpec.earliest()}))
        a.list_consumer_groups().result(timeout=20)
        done(a.describe_consumer_groups([f"{prefix}-ck-group"]))
        a.describe_cluster().result(timeout=20)
        done(a.delete_records([TopicPartition(topic, 2, 1)]))
        a.list_topics(timeout=10)
        done(a.delete_topics([doomed]))
        done(a.delete_consumer_groups([f"{prefix}-ck-group"]))

    for what, fn in (("topics", topics), ("configs", configs), ("produce", produce),
                     ("consume", consume), ("admin", admin_rest)):
        attempt(f"confluent-kafka {what}", fn, failures)


def drive_kafka_python(bootstrap, prefix, failures):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    topic = f"{prefix}-kp"

    def admin():
        a = KafkaAdminClient(bootstrap_servers=bootstrap)
        a.create_topics([NewTopic(topic, 2, 1), NewTopic(topic + "-doomed", 1, 1)])
        a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        a.create_partitions({topic: NewPartitions(3)})
        a.delete_topics([topic + "-doomed"])
        a.close()

    def produce():
        for codec in (None, "gzip"):
            p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec)
            for i in range(10):
                p.send(topic, key=b"k%d" % i, value=b"kafka-python %d" % i)
            p.flush(20)
            p.close()

    def consume():
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{prefix}-kp-group",
                          auto_offset_reset="earliest", consumer_timeout_ms=8000,
                          enable_auto_commit=False)
        for n, _ in enumerate(c):
            if n >= 9:
                break
        c.commit()
        c.close()

    for what, fn in (("admin", admin), ("produce", produce), ("consume", consume)):
        attempt(f"kafka-python {what}", fn, failures)
    # One call each, as kafka-python 3 names them: a call it lacks or the broker refuses
    # still leaves a frame behind.
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    group = f"{prefix}-kp-group"
    calls = [
        ("list_groups", lambda: a.list_groups()),
        ("describe_groups", lambda: a.describe_groups([group])),
        ("describe_cluster", lambda: a.describe_cluster()),
        ("describe_log_dirs", lambda: a.describe_log_dirs()),
        ("describe_topic_partitions", lambda: a.describe_topic_partitions([topic])),
        ("list_partition_reassignments", lambda: a.list_partition_reassignments()),
        ("describe_metadata_quorum", lambda: a.describe_metadata_quorum()),
        ("delete_group_offsets",
         lambda: a.delete_group_offsets(group, [TopicPartition(topic, 0)])),
        ("elect_leaders", lambda: a.elect_leaders(0, [TopicPartition(topic, 0)],
                                                  raise_errors=False)),
        ("delete_groups", lambda: a.delete_groups([group])),
    ]
    for what, fn in calls:
        attempt(f"kafka-python {what}", fn, failures)
    a.close()


def drive_command_line(bootstrap, prefix, failures):
    topic = f"{prefix}-cli"
    b = ["--bootstrap-server", bootstrap]
    runs = [
        [BIN, "topics", "create", *b, topic, "-p", "2", "-c", "retention.ms=7200000"],
        [BIN, "topics", "list", *b],
        [BIN, "topics", "describe", *b, topic],
        [BIN, "produce", *b, topic, "--key-separator", ":", "-H", "a=b"],
        [BIN, "consume", *b, topic, "-g", f"{prefix}-cli-group", "--from-beginning",
         "--max-messages", "3", "--timeout-ms", "10000"],
        [BIN, "groups", "describe", *b, f"{prefix}-cli-group"],
        [BIN, "configs", "describe", *b, "--topic", topic],
        [BIN, "configs", "set", *b, "--topic", topic, "retention.ms=3600000"],
        [BIN, "offsets", *b, topic, "--time", "earliest"],
        [BIN, "topics", "alter", *b, topic, "-p", "3"],
        [BIN, "cluster", "status", *b],
        ["kcat", "-b", bootstrap, "-L"],
        ["kcat", "-b", bootstrap, "-P", "-t", topic, "-z", "snappy", "-K", ":"],
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning"],
        ["kcat", "-b", bootstrap, "-G", f"{prefix}-kcat-group", "-e", "-o", "beginning", topic],
    ]
    lines = "".join(f"k{i}:value {i}\n" for i in range(3))
    for args in runs:
        attempt(" ".join(args[1:3]), lambda: subprocess.run(
            args, input=lines, capture_output=True, text=True, timeout=30, check=True), failures)


def record(bootstrap, prefix):
    failures = []
    drive_confluent(bootstrap, prefix, failures)
    drive_kafka_python(bootstrap, prefix, failures)
    drive_command_line(bootstrap, prefix, failures)
    return failures


# ----- mutation -----

INTERESTING_8 = [0, 1, 0x7F, 0x80, 0xFF]
INTERESTING_16 = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, -0x8000, 1000, 32766]
INTERESTING_32 = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0xFFFF, 0x10000, 1 << 24, 1 << 30, 100000]
INTERESTING_64 = [0, -1, -2, -3, 1 << 62, (1 << 63) - 1, -(1 << 63), 1 << 32]


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return uvarint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


class Mutator:
    def __init__(self, corpus, versions, seed):
        self.corpus = corpus
        self.versions = versions
        self.rng = random.Random(seed)

    def position(self, frame):
        """Mostly past the 8-byte header prefix, so most frames reach a body decoder."""
        if len(frame) > 8 and self.rng.random() < 0.9:
            return self.rng.randrange(8, len(frame))
        return self.rng.randrange(len(frame)) if frame else 0

    def put(self, frame, fmt, value):
        size = struct.calcsize(fmt)
        if len(frame) < size:
            return
        at = min(self.position(frame), len(frame) - size)
        frame[at:at + size] = struct.pack(fmt, value)

    def mutate(self, frame):
        r = self.rng
        frame = bytearray(frame)
        for _ in range(r.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            op = r.randrange(14)
            if op == 0 and frame:
                frame[self.position(frame)] ^= 1 << r.randrange(8)
            elif op == 1 and frame:
                frame[self.position(frame)] = r.choice(INTERESTING_8)
            elif op == 2:
                self.put(frame, ">h", r.choice(INTERESTING_16))
            elif op == 3:
                self.put(frame, ">i", r.choice(INTERESTING_32))
            elif op == 4:
                self.put(frame, ">q", r.choice(INTERESTING_64))
            elif op == 5:
                at = self.position(frame)
                v = r.choice(INTERESTING_32 + INTERESTING_64)
                enc = zigzag(v) if r.random() < 0.5 else uvarint(v & ((1 << 64) - 1))
                frame[at:at + r.randrange(1, 6)] = enc
            elif op == 6:
                del frame[self.position(frame):]
            elif op == 7:
                at = self.position(frame)
                frame[at:at] = bytes(r.randrange(256) for _ in range(r.randrange(1, 64)))
            elif op == 8 and frame:
                at = self.position(frame)
                del frame[at:at + r.randrange(1, 32)]
            elif op == 9 and frame:
                at = self.position(frame)
                chunk = frame[at:at + r.randrange(1, 256)]
                frame[at:at] = chunk * r.randrange(1, 4)
            elif op == 10:
                other = r.choice(self.corpus)
                frame = frame[:self.position(frame)] + other[r.randrange(len(other)):]
            elif op == 11 and len(frame) >= 4:
                key = struct.unpack(">h", frame[:2])[0]
                lo, hi = self.versions.get(key, (0, 0))
                v = r.choice([lo, hi, hi + 1, lo - 1, r.randrange(lo, hi + 1), -1, 0x7FFF])
                frame[2:4] = struct.pack(">h", v)
            elif op == 12 and len(frame) >= 4:
                key = r.choice(list(self.versions) + [-1, 1000, r.randrange(100)])
                lo, hi = self.versions.get(key, (0, 3))
                frame[0:4] = struct.pack(">hh", key, r.randrange(lo, hi + 1))
            elif op == 13 and len(frame) > 8:
                # A length-looking int32 or int16 right after the header, where arrays start.
                at = r.randrange(8, min(len(frame), 40))
                fmt = ">i" if r.random() < 0.5 else ">h"
                if at + struct.calcsize(fmt) <= len(frame):
                    frame[at:at + struct.calcsize(fmt)] = struct.pack(
                        fmt, r.choice(INTERESTING_32 if fmt == ">i" else INTERESTING_16))
        return bytes(frame)


# ----- fuzzing -----

class Stats:
    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.closed = 0
        self.unanswered = 0
        self.lying_sizes = 0
        self.by_key = collections.Counter()


async def exchange(r, w, mutator, stats):
    """Sends a few mutated frames, pipelined, and reads what answers come."""
    rng = mutator.rng
    frames = [mutator.mutate(rng.choice(mutator.corpus)) for _ in range(rng.choice((1, 1, 2, 4)))]
    for f in frames:
        size = len(f)
        if rng.random() < 0.01:
            # A size that lies: more than follows (the broker waits for the rest, then we
            # go), or beyond any limit.
            size = rng.choice((size + rng.randrange(1, 100), 0x7FFFFFFF, -1))
            stats.lying_sizes += 1
        w.write(struct.pack(">i", size) + f)
        stats.sent += 1
        if len(f) >= 2:
            stats.by_key[struct.unpack(">h", f[:2])[0]] += 1
    await w.drain()
    for _ in frames:
        size = struct.unpack(">i", await asyncio.wait_for(r.readexactly(4), 1.0))[0]
        await r.readexactly(size)
        stats.answered += 1


async def worker(host, port, mutator, stats, deadline):
    while time.monotonic() < deadline:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline:
                # Bounded: a broker that stops reading (a long poll ahead of pipelined
                # requests) must not hold the worker past the run.
                await asyncio.wait_for(exchange(r, w, mutator, stats), 5.0)
        except (asyncio.IncompleteReadError, ConnectionError):
            stats.closed += 1
        except asyncio.TimeoutError:
            # acks=0, a long poll, a lying size: no answer is due soon; go.
            stats.unanswered += 1
        except OSError:
            stats.closed += 1
        finally:
            w.close()


async def fuzz(address, mutator, connections, seconds, stats):
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + seconds
    workers = [worker(host, int(port), Mutator(mutator.corpus, mutator.versions,
                                               mutator.rng.random()), stats, deadline)
               for _ in range(connections)]
    await asyncio.wait_for(asyncio.gather(*workers), seconds + 30)


def api_versions(address, timeout=10.0):
    """ApiVersions v0 on a fresh socket: {key: (min, max)}."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        body = struct.pack(">hhih", 18, 0, 7, 5) + b"probe"
        s.sendall(struct.pack(">i", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed before answering ApiVersions")
            data += chunk
    error, n = struct.unpack(">hi", data[8:14])
    if error:
        raise RuntimeError(f"ApiVersions error {error}")
    return {k: (lo, hi) for k, lo, hi in struct.iter_unpack(">hhh", data[14:14 + 6 * n])}


class Probe(threading.Thread):
    """A well-behaved client: one record at a time, produced with acks=all and read back."""

    def __init__(self, bootstrap, direct):
        super().__init__(daemon=True)
        self.bootstrap, self.direct = bootstrap, direct
        self.stop = threading.Event()
        self.acknowledged, self.latencies, self.failures = [], [], []

    def run(self):
        from confluent_kafka import Consumer, Producer, TopicPartition
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                      "message.timeout.ms": int(PROBE_DEADLINE * 1000)})
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "fuzz-probe-reader",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(PROBE_TOPIC, 0, 0)])
        n = 0
        while not self.stop.is_set():
            start = time.monotonic()
            value = f"probe-{n}".encode()
            outcome = []
            p.produce(PROBE_TOPIC, value=value, partition=0,
                      on_delivery=lambda err, msg: outcome.append(err))
            p.flush(PROBE_DEADLINE + 5)
            if outcome != [None]:
                self.failures.append(f"record {n} not acknowledged: {outcome}")
                break
            self.acknowledged.append(value)
            while True:
                m = c.poll(0.2)
                if m is not None and not m.error() and m.value() == value:
                    break
                if time.monotonic() - start > PROBE_DEADLINE:
                    self.failures.append(f"record {n} not read back within {PROBE_DEADLINE} s")
                    break
            try:
                api_versions(self.direct)
            except Exception as e:
                self.failures.append(f"ApiVersions on a fresh connection: {e!r}")
            self.latencies.append(time.monotonic() - start)
            if self.failures:
                break
            n += 1
            self.stop.wait(0.1)
        c.close()


def read_back(bootstrap, expected):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-check",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(PROBE_TOPIC, 0, 0)])
    got, deadline = [], time.monotonic() + 60
    while len(got) < len(expected) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def run(seconds, connections, seed, workdir, out=sys.stdout):
    """Records, fuzzes and checks; returns the list of failures (empty when all is well)."""
    say = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    data, log = os.path.join(workdir, "data"), os.path.join(workdir, "broker.log")
    recorder = Recorder()
    broker = Broker(data, log, advertise=recorder.address)
    recorder.start(broker.address)
    failures = []
    try:
        started = time.monotonic()
        steps = record(recorder.address, "fz")
        recorder.recording = False
        corpus = recorder.frames
        keys = collections.Counter(struct.unpack(">h", f[:2])[0] for f in corpus)
        say(f"recorded {len(corpus)} frames of {len(keys)} APIs in "
            f"{time.monotonic() - started:.0f} s; client steps that failed: {steps or 'none'}")
        versions = api_versions(broker.address)
        missing = sorted(set(versions) - set(keys))
        say(f"advertised APIs not recorded (reached only by mutation): {missing}")

        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": recorder.address})
        admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)])[PROBE_TOPIC].result(timeout=20)
        del admin
        probe = Probe(recorder.address, broker.address)
        probe.start()
        stats = Stats()
        say(f"fuzzing {seconds} s over {connections} connections, seed {seed}")
        asyncio.run(fuzz(broker.address, Mutator(corpus, versions, seed), connections,
                         seconds, stats))
        probe.stop.set()
        probe.join(PROBE_DEADLINE * 2)
        say(f"sent {stats.sent} frames ({stats.sent / seconds:.0f}/s), "
            f"{stats.answered} answered, {stats.closed} connections closed by the broker, "
            f"{stats.unanswered} left unanswered, {stats.lying_sizes} with lying sizes")
        others = sum(n for k, n in stats.by_key.items() if k not in versions)
        say("frames per advertised API key: " + ", ".join(
            f"{k}:{stats.by_key[k]}" for k in sorted(versions)) + f"; other keys: {others}")
        say(f"probe: {len(probe.latencies)} records, latency p50 "
            f"{percentile(probe.latencies, 0.5) * 1000:.0f} ms, p99 "
            f"{percentile(probe.latencies, 0.99) * 1000:.0f} ms, max "
            f"{max(probe.latencies, default=0) * 1000:.0f} ms")
        failures += probe.failures
        if not probe.acknowledged:
            failures.append("the probe never got a record acknowledged")
    finally:
        alive = broker.proc.poll() is None
        status = broker.stop()
    if not alive:
        failures.append(f"the broker died during the run (exit status {broker.proc.returncode})")
    elif status != 0:
        failures.append(f"SIGTERM: exit status {status} (None: still running after 30 s)")

    restarted = Broker(data, log)
    try:
        got = read_back(restarted.address, probe.acknowledged)
        if got[:len(probe.acknowledged)] != probe.acknowledged:
            failures.append(f"after a restart, {len(got)} of {len(probe.acknowledged)} "
                            "acknowledged probe records read back, or not in order")
    finally:
        if restarted.stop() != 0:
            failures.append("the restarted broker did not stop cleanly")
    failures += [f"panic in the broker's log: {p}" for p in restarted.panics()]
    say("failures: " + ("none" if not failures else "\n  " + "\n  ".join(failures)))
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--keep", help="a directory to keep the data and log in")
    args = parser.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        failures = run(args.seconds, args.connections, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory() as d:
            failures = run(args.seconds, args.connections, args.seed, d)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
