"""What a launcher left behind: its process tree from /proc, and whether processes and ports are gone."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from devstack.ports import port_is_free


class Proc(NamedTuple):
    """A process by pid *and* start time, so a reused pid is not taken for it."""

    pid: int
    start: int
    command: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command in parentheses may contain spaces
    return fields[0], int(fields[1]), int(fields[19])


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
    except OSError:
        return "?"


def descendants(root: int) -> list[Proc]:
    """Every living process below ``root`` (children, their children...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[1], []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        st = _stat(pid)
        if st is not None and st[0] != "Z":
            found.append(Proc(pid, st[2], _command(pid)))
        todo.extend(children.get(pid, []))
    return found


def alive(proc: Proc) -> bool:
    """Running (a zombie waiting for its reaper holds no port and runs nothing)."""
    st = _stat(proc.pid)
    return st is not None and st[2] == proc.start and st[0] != "Z"


def leftovers(procs: Iterable[Proc], ports: Mapping[str, int], *, timeout_s: float) -> list[str]:
    """What is still running or listening once ``timeout_s`` has passed (empty as soon as all is gone)."""
    procs = list(procs)
    deadline = time.monotonic() + timeout_s
    while True:
        left = [f"pid {p.pid} ({p.command})" for p in procs if alive(p)]
        left += [f"port {port} ({name})" for name, port in ports.items() if not port_is_free(port)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_all(procs: Iterable[Proc]) -> None:
    """Clean up after a failed test: nothing it started may outlive it."""
    for p in procs:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
