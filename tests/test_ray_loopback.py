"""What the Ray a local search starts exposes: nothing beyond loopback, no dashboard, and token
authentication on.  Every listening socket of the driver and of every Ray process it started is
listed (the GCS, the raylet, the workers, the runtime-env agent) and must be on loopback.
"""

from __future__ import annotations

import os

import ray

from harness.search.driver import connect

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}  # the last: IPv4 loopback on an IPv6 socket


def listening_sockets() -> list[tuple[str, str, str, int]]:
    """(process name, command line, address, port) of every listening socket of this process
    and the Ray processes it started (all of them are its descendants)."""
    import psutil  # ships inside Ray (ray/thirdparty_files), importable once ray is imported

    found = []
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            name, cmdline = process.name(), " ".join(process.cmdline())
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        name = "driver" if process.pid == me.pid else name  # this process: Ray's core worker
        found += [
            (name, cmdline, c.laddr.ip, c.laddr.port)
            for c in connections
            if c.status == psutil.CONN_LISTEN
        ]
    return found


def test_a_local_search_ray_listens_on_loopback_only_with_no_dashboard_and_a_token() -> None:
    if ray.is_initialized():
        ray.shutdown()
    assert connect(None)  # the search's own start, as run_search makes it
    try:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker is up as well
        assert os.environ.get("RAY_AUTH_MODE") == "token"  # every Ray server checks the token
        sockets = listening_sockets()
        names = {name for name, _, _, _ in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets  # the check sees Ray's servers
        scripts = [" ".join(s[1].split()[:2]) for s in sockets]  # the program and its script
        assert not [s for s in scripts if "dashboard" in s], scripts
        assert 8265 not in {port for _, _, _, port in sockets}  # the dashboard's HTTP port
        assert not [s for s in sockets if s[2] not in LOOPBACK], sockets
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    finally:
        ray.shutdown()
