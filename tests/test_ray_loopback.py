"""The Ray a local search starts listens on loopback only: nothing reachable from the network."""

from __future__ import annotations

import ray

from harness.search.driver import connect

LOOPBACK = {"127.0.0.1", "::1"}


def listening_sockets() -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening socket of this process and the Ray
    processes it started (all of them are its descendants)."""
    import psutil  # ships inside Ray (ray/thirdparty_files), importable once ray is imported

    found = []
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            name, connections = process.name(), process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found += [
            (name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN
        ]
    return found


def test_a_local_search_ray_listens_on_loopback_only() -> None:
    if ray.is_initialized():
        ray.shutdown()
    assert connect(None)  # the search's own start, as run_search makes it
    try:
        assert ray.get(ray.remote(lambda: 1).remote()) == 1  # a worker is up as well
        sockets = listening_sockets()
        names = {name for name, _, _ in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets  # the check sees Ray's servers
        exposed = [s for s in sockets if s[1] not in LOOPBACK]
        assert not exposed, f"listening beyond loopback: {exposed}"
    finally:
        ray.shutdown()
