"""The launcher's children die with it, and its readiness check only believes the process it started."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_port, owns_listener, port_holders
from devstack.stack import ROOT, ServiceProcess, Stack
from tests.proctree import Proc, alive, descendants, kill_all, leftovers

pytestmark = pytest.mark.integration

# A launcher that forks its child from a worker thread which then ends (as asyncio.to_thread does):
# PR_SET_PDEATHSIG fires when the forking *thread* exits, so a naive tie would kill the child here.
LAUNCHER = """
import os, signal, threading, time
from devstack.processes import spawn
started = {}
def fork():
    started["p"] = spawn(["sleep", "300"], death_signal=signal.SIGKILL)
worker = threading.Thread(target=fork)
worker.start()
worker.join()
while os.path.exists(f"/proc/self/task/{worker.native_id}"):
    time.sleep(0.01)
print(started["p"].pid, flush=True)
time.sleep(300)
"""


def test_a_child_outlives_the_thread_that_forked_it_but_not_the_launcher() -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True
    )
    children: list[Proc] = []
    try:
        assert launcher.stdout is not None
        pid = int(launcher.stdout.readline())
        children = descendants(launcher.pid)
        assert [c.pid for c in children] == [pid]
        assert alive(children[0]), "the child died with the worker thread that forked it"
        launcher.kill()
        launcher.wait(10)
        assert not leftovers(children, {}, timeout_s=10)
    finally:
        launcher.kill()
        launcher.wait(10)
        kill_all(children)


class _Stranger(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ready")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stranger() -> Iterator[int]:
    """Another process's service answering 200 on every path, /readyz included (a leftover stack)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stranger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _service(port: int, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(
        name="collector",
        port=port,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        log_path=tmp_path / "service.log",
        app="tests.fakes.ready_app:app",
    )


def test_readiness_is_not_fooled_by_another_process_on_the_port(stranger: int, tmp_path: Path) -> None:
    svc = _service(stranger, tmp_path)
    svc.start()
    try:
        with pytest.raises(RuntimeError, match=f"port {stranger} is in use by pid {os.getpid()} "):
            svc.wait_ready(60)
    finally:
        svc.stop()


def test_the_same_service_is_ready_on_a_free_port(tmp_path: Path) -> None:
    svc = _service(free_port(), tmp_path)
    svc.start()
    try:
        svc.wait_ready(60)
        assert svc.proc is not None and owns_listener(svc.proc.pid, svc.port)
    finally:
        assert svc.stop() in (0, -signal.SIGTERM)  # a graceful exit (uvicorn re-raises the signal)


def test_the_holder_of_a_port_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        holders = port_holders(port)
        assert [h.pid for h in holders] == [os.getpid()]
        assert "pytest" in holders[0].command or "python" in holders[0].command
        assert owns_listener(os.getpid(), port)
        assert not owns_listener(os.getppid(), port)
    assert port_holders(port) == []


def test_stop_waits_for_a_service_that_ignores_sigterm(tmp_path: Path) -> None:
    svc = _service(free_port(), tmp_path)
    svc.start()
    try:
        svc.wait_ready(60)
        assert svc.proc is not None
        os.kill(svc.proc.pid, signal.SIGSTOP)  # frozen: SIGTERM stays pending, only SIGKILL works
        assert svc.stop(timeout_s=1) == -signal.SIGKILL
    finally:
        svc.kill()


def test_the_launcher_names_each_taken_or_doubled_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken, shared = held.getsockname()[1], free_port()
        ports = {"collector": taken, "scorer": shared, "actions": shared, "notifier": free_port()}
        embedded = Stack(var_dir=tmp_path, ports=ports, broker_port=taken, postgres_port=free_port())
        external = Stack(var_dir=tmp_path, ports=ports, kafka_bootstrap="k:9092", broker_port=taken)
        problems, external_problems = embedded.port_conflicts(), external.port_conflicts()
        notes: list[str] = []
        moved = embedded._infra_port(None, taken, "broker", notes.append)
    mine = f"is in use by pid {os.getpid()} ("
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"port {taken} (collector) {mine}")
    assert problems[1] == f"port {shared} is given to both scorer and actions"
    assert problems[2].startswith(f"port {taken} is given to both collector and broker")
    assert len(external_problems) == 2  # an external broker needs no port of ours
    # a preferred infrastructure port that is taken moves, and says so and why
    assert moved != taken and len(notes) == 1 and f"port {taken} {mine}" in notes[0]
