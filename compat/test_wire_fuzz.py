"""The wire fuzzer (wire_fuzz.py) for a bounded run: mutated copies of real clients' requests
over many connections must not stop the broker serving a well-behaved client, make it panic,
keep it from a clean shutdown, or lose a record it acknowledged."""

import os
import random

import wire_fuzz


def test_mutated_client_requests_do_not_take_the_broker_down(tmp_path):
    seconds = float(os.environ.get("RUNNEL_FUZZ_SECONDS", "90"))
    seed = random.randrange(1 << 32)
    failures = wire_fuzz.run(seconds, 32, seed, str(tmp_path))
    assert failures == [], f"seed {seed}"
