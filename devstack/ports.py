"""Loopback ports: free ones for tests, who holds a taken one, and whether a listener is ours.

A port that answers is not proof of anything: a leftover stack answers ``/readyz`` too. On Linux the
kernel's socket tables (``/proc/net/tcp*``) and each process's descriptors (``/proc/<pid>/fd``) say
which process owns a listening socket; elsewhere only the plain checks are available.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_LISTEN = "0A"
OWNERSHIP_KNOWN = _TCP_TABLES[0].exists()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def preferred_port(preferred: int, host: str = "127.0.0.1") -> int:
    """The preferred port when it is free, otherwise any free port."""
    return preferred if port_is_free(preferred, host) else free_port(host)


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f}s")


@dataclass(frozen=True)
class PortHolder:
    pid: int
    command: str


def _socket_inodes(port: int, *, listening: bool) -> set[int]:
    """Inodes of the sockets bound to local ``port`` (only listening ones when ``listening``)."""
    found: set[int] = set()
    for table in _TCP_TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if inode and int(local.rsplit(":", 1)[1], 16) == port and (state == _LISTEN or not listening):
                found.add(inode)
    return found


def _process_sockets(pid: int) -> set[int]:
    """Socket inodes among the open descriptors of ``pid`` (empty when they cannot be read)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text if len(text) <= 120 else text[:117] + "..."


def port_holders(port: int) -> list[PortHolder]:
    """The processes with a socket on local ``port`` that this user may inspect (root: all of them)."""
    inodes = _socket_inodes(port, listening=False)
    if not inodes:
        return []
    holders = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _process_sockets(int(entry)) & inodes:
            holders.append(PortHolder(pid=int(entry), command=_command(int(entry))))
    return sorted(holders, key=lambda h: h.pid)


def describe_holders(port: int) -> str:
    """Who holds ``port``, for a message a person acts on."""
    holders = port_holders(port) if OWNERSHIP_KNOWN else []
    if not holders:
        return "by a process this user cannot see (try: ss -ltnp)"
    return "; ".join(f"by pid {h.pid} ({h.command})" for h in holders[:3])


def owns_listener(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself holds the socket listening on ``port`` (True where unknowable)."""
    if not OWNERSHIP_KNOWN:
        return True
    return bool(_socket_inodes(port, listening=True) & _process_sockets(pid))


def wait_for_listener(
    pid: int, port: int, *, alive: Callable[[], bool], what: str, timeout_s: float = 20.0
) -> bool:
    """Wait until ``pid`` itself listens on ``port`` (False if it exited): a stranger answering is not it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return False
        # Without the kernel's tables (not Linux) owns_listener says True: then any listener counts.
        if owns_listener(pid, port) and not port_is_free(port):
            return True
        time.sleep(0.05)
    held = "" if port_is_free(port) else f"; port {port} is held {describe_holders(port)}"
    raise TimeoutError(f"{what} (pid {pid}) does not listen on port {port} after {timeout_s:.0f}s{held}")
