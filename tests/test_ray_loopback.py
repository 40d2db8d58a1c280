"""What the Ray a local search starts exposes: no dashboard, and token authentication on.

Ray 2.60 cannot bind its gRPC servers (GCS, raylet, core workers) to loopback: they listen on
every interface whatever the node address (``ray.init`` maps 127.0.0.1 to the node's own
address), so a local search keeps the dashboard off and relies on the token authentication a
local ``ray.init()`` turns on.  This test pins both, and lists what does listen beyond loopback.
"""

from __future__ import annotations

import os

import ray

from harness.search.driver import connect

LOOPBACK = {"127.0.0.1", "::1"}
# Ray's servers, every one checking the token: GCS, raylet, core workers (the driver's included)
RAY_GRPC = {"gcs_server", "raylet", "ray::IDLE", "ray::RuntimeEnvAgent", "driver"}


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


def test_a_local_search_ray_has_no_dashboard_and_requires_a_token() -> None:
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
        exposed = {s[0] for s in sockets if s[2] not in LOOPBACK}
        assert exposed <= RAY_GRPC, sockets  # nothing else listens beyond loopback
    finally:
        ray.shutdown()
