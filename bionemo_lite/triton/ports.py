"""Triton's default ports here, and finding out whether (and by what) a port is taken.

Triton's own defaults are 8000 (HTTP), 8001 (gRPC) and 8002 (metrics), and the
bionemo-lite API serves on 8000 too: a user who starts both on one machine
would get a clash. ``bionemo-lite triton serve`` therefore listens on
8010 / 8011 / 8012 unless told otherwise, and the API's Triton backend looks
there first.

    >>> check_ports_free("127.0.0.1", {"HTTP": 8010, "gRPC": 8011})
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from ..errors import BionemoLiteError

TRITON_HTTP_PORT = 8010
TRITON_GRPC_PORT = 8011
TRITON_METRICS_PORT = 8012
TRITON_PORTS = {"http": TRITON_HTTP_PORT, "grpc": TRITON_GRPC_PORT, "metrics": TRITON_METRICS_PORT}


class PortInUseError(BionemoLiteError):
    """A port a server was to listen on is taken (the message names it and, where known, by what)."""


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host`:`port` would fail because someone listens there.

    ``SO_REUSEADDR`` is set as servers set it, so a port whose last connection
    is still in TIME_WAIT counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str | None:
    """``"pid 1234 (python -m uvicorn ...)"`` for the process listening on TCP `port`, if it can be found.

    Uses psutil when it is installed; None when it is not, or when the owner is
    not visible to this user.
    """
    try:
        import psutil
    except ImportError:
        return None
    try:
        listeners = [c for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port]
    except (psutil.Error, OSError):
        return None
    for conn in listeners:
        if conn.pid is None:
            continue
        try:
            proc = psutil.Process(conn.pid)
            command = " ".join(proc.cmdline()) or proc.name()
        except psutil.Error:
            return f"pid {conn.pid}"
        if len(command) > 120:
            command = command[:117] + "..."
        return f"pid {conn.pid} ({command})"
    return None


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Raise before anything starts if one of `ports` (``{what: port}``) is taken on `host`.

    Raises:
        PortInUseError: naming each taken port, what it was meant for, and the
            process holding it where that can be found.
    """
    seen: dict[int, str] = {}
    for what, port in ports.items():
        if port in seen:
            raise PortInUseError(f"the {seen[port]} and {what} ports are both {port}; give each its own")
        seen[port] = what
    taken = []
    for what, port in ports.items():
        if port and port_in_use(host, port):
            owner = port_owner(port)
            taken.append(f"{what} port {port} on {host} is taken" + (f" by {owner}" if owner else ""))
    if taken:
        raise PortInUseError("; ".join(taken) + ". Stop that process or choose other ports.")
