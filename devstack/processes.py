"""Child processes that die with the launcher, even when it is killed hard (SIGKILL, OOM).

Every child runs in its own session (a Ctrl-C in the terminal reaches the launcher only, which stops
the children in order) and asks the kernel, between fork and exec, for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``). That signal fires when the *thread* that forked the child exits, not the
process: children are therefore forked by one thread that lives as long as the process, never by a
worker thread (``asyncio.to_thread``, an executor) that may end while the child should live on.
Linux only; elsewhere children are started without the tie.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    prctl: Callable[..., int] = fn
    return prctl


_PRCTL = _load_prctl()


def _death_tie(death_signal: int, parent_pid: int) -> Callable[[], None] | None:
    """The ``preexec_fn`` that asks for ``death_signal`` when the parent dies (runs in the forked child)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def tie() -> None:
        # After setuid (subprocess changes credentials before preexec_fn; a change clears the setting).
        if prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent_pid:  # the launcher died between fork and prctl: nobody will signal us
            os._exit(1)

    return tie


class _Forker:
    """The one long-lived thread that forks every child (see the module docstring for why)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="devstack-forker", daemon=True)
                self._thread.start()
        done: Future[Any] = Future()
        self._jobs.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller, who re-raises it
                done.set_exception(exc)


_FORKER = _Forker()


def spawn(args: Sequence[str], *, death_signal: int, **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, sent ``death_signal`` by the kernel if this process dies."""
    tie = _death_tie(death_signal, os.getpid())

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(args), start_new_session=True, preexec_fn=tie, **popen_kwargs)

    proc: subprocess.Popen[bytes] = _FORKER.call(start)
    return proc


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """``sig`` to the child's whole process group (a session leader's group holds what it forked)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_all(
    procs: Sequence[subprocess.Popen[bytes]], *, sig: int = signal.SIGTERM, timeout_s: float = 15.0
) -> None:
    """Ask every process to stop at once, wait for all of them, SIGKILL the groups of those that did not."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # only an uninterruptible sleep resists
                proc.wait(10)
