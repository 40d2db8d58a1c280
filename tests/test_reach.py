"""A Ray address where nothing listens is one line at once, not minutes of Ray's retries
(harness/search/reach.py; the CLI case is ``cli-address-unreachable`` in test_bad_inputs.py)."""

from __future__ import annotations

import socket
import time

import pytest

from harness.search.reach import ClusterUnreachable, check_reachable, host_port


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.7:6379", ("10.0.0.7", 6379)),
        ("head.cluster:6380", ("head.cluster", 6380)),
        ("ray://head:10001", ("head", 10001)),
        ("[fd00::7]:6379", ("fd00::7", 6379)),
        ("auto", None),  # Ray's own words: left to Ray
        ("local", None),
        ("10.0.0.7", None),  # no port: left to Ray
    ],
)
def test_the_host_and_port_of_an_address(address, expected):
    assert host_port(address) == expected


def test_a_port_where_nothing_listens_is_refused_at_once():
    with socket.socket() as probe:  # a port this machine has free
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterUnreachable) as raised:
        check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert message.startswith(f"cannot reach Ray at '127.0.0.1:{port}': nothing listens on ")
    assert message.endswith(
        f"(connection refused); start the cluster's head there (`ray start --head "
        f"--port={port}`) or give the right --address"
    )
    assert "\n" not in message


def test_an_address_that_answers_passes_and_a_local_ray_needs_no_check():
    with socket.socket() as head:  # every interface, as a Ray head's GCS listens
        head.bind(("", 0))
        head.listen()
        check_reachable(f"127.0.0.1:{head.getsockname()[1]}")
    check_reachable(None)
    check_reachable("auto")
