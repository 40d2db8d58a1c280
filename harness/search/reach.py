"""Is the Ray cluster a search names (``--address``, ``RAY_ADDRESS``, or the one it ran on)
there at all?  Asked with one TCP connection before anything is started or written.

Ray's driver does not give up on an address where no cluster answers: each attempt waits out
a connection timeout and then a cluster-id timeout, and it makes twenty, so a mistyped port
costs minutes and ends in a traceback.  A TCP connection is refused at once where nothing
listens, and times out in :data:`CONNECT_TIMEOUT_S` where the host drops packets, so the search
says in one line what is wrong before it takes its lock or starts Ray.  An address that answers
but is not Ray is left to Ray.
"""

from __future__ import annotations

import re
import socket

from ray._private.services import resolve_ip_for_localhost

CONNECT_TIMEOUT_S = 10.0

_HOST_PORT = re.compile(r"^(?:ray://)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d+)$")


class ClusterUnreachable(ValueError):
    """Nothing answers at a Ray address; one line saying what was tried and what to do."""


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port``, ``[v6]:port`` or ``ray://host:port``; None for what Ray
    resolves itself (``auto``, ``local``, an address without a port)."""
    found = _HOST_PORT.match(address.strip())
    if found is None:
        return None
    return found.group("v6") or found.group("host"), int(found.group("port"))


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`ClusterUnreachable` unless something accepts a TCP connection at
    ``address`` (None: a local Ray, nothing to check)."""
    where = host_port(address) if address else None
    if where is None:
        return
    named, port = where
    host = resolve_ip_for_localhost(named)  # as Ray dials it: a loopback name means this node
    at = f"{host}:{port}"
    if host != named:
        at += f" (this node's address, which Ray dials for {named})"
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        why = (
            f"nothing listens on {at} (connection refused); start the cluster's head there "
            f"(`ray start --head --port={port}`) or give the right --address"
        )
    except TimeoutError:
        why = (
            f"{at} did not answer within {timeout:g} s; check the address, and that no "
            "firewall stands between this machine and the head node"
        )
    except socket.gaierror as err:
        why = f"unknown host {host!r} ({err.strerror})"
    except OSError as err:
        why = f"{at}: {err.strerror or err}"
    else:
        return
    raise ClusterUnreachable(f"cannot reach Ray at {address!r}: {why}")
