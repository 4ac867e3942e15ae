"""``python -m devstack run`` (what ``make run`` starts) stopped the ways people and supervisors stop it.

Ctrl-C, SIGTERM to its process group (a script, a supervisor, a closed terminal) and a SIGKILL of the
launcher alone must each leave no process of the stack and no port listening; a launch while one of
its ports is taken must refuse before starting anything, naming the port and who holds it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.ports import free_port, owns_listener
from devstack.stack import ROOT, RUN_PORT_VARIABLES, SERVICES
from tests.proctree import Proc, descendants, kill_all, leftovers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

READY_TIMEOUT_S = 240.0  # embedded PostgreSQL's initdb, migrations and five services on a shared machine
GONE_TIMEOUT_S = 30.0  # services' graceful shutdown is bounded at 15 s, then SIGKILL


@dataclass
class Launcher:
    proc: subprocess.Popen[bytes]
    output_path: Path
    ports: dict[str, int]
    tree: list[Proc] = field(default_factory=list)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Ready." not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {READY_TIMEOUT_S:.0f}s:\n{self.output()}")
            time.sleep(0.2)
        self.tree = descendants(self.proc.pid)


def _launch(var: Path, ports: dict[str, int]) -> Launcher:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL")}
    env.update({RUN_PORT_VARIABLES[name]: str(port) for name, port in ports.items()})
    output_path = var.parent / f"{var.name}.out"
    with output_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack", "run", "--var", str(var), "--quiet"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as under a terminal or a supervisor
        )
    return Launcher(proc=proc, output_path=output_path, ports=ports)


def _ports() -> dict[str, int]:
    return {name: free_port() for name in (*SERVICES, "broker", "postgres")}


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launched = _launch(tmp_path / "var", _ports())
    try:
        yield launched
    finally:
        if launched.proc.poll() is None:
            launched.proc.kill()
        launched.proc.wait(30)
        kill_all(launched.tree)


@pytest.mark.parametrize(
    ("how", "sig", "group"),
    [
        ("Ctrl-C", signal.SIGINT, True),
        ("SIGTERM to the process group", signal.SIGTERM, True),
        ("SIGKILL of the launcher", signal.SIGKILL, False),
    ],
)
def test_nothing_outlives_the_launcher(launcher: Launcher, how: str, sig: int, group: bool) -> None:
    launcher.wait_for_ready()
    tree = launcher.tree
    commands = " ".join(p.command for p in tree)
    assert "tansu" in commands and "postgres" in commands and commands.count("uvicorn") == len(SERVICES), (
        commands
    )
    for name, port in launcher.ports.items():
        assert any(owns_listener(p.pid, port) for p in tree), f"{name} is not listening on {port}"

    if group:
        os.killpg(launcher.proc.pid, sig)
    else:
        launcher.proc.send_signal(sig)
    code = launcher.proc.wait(GONE_TIMEOUT_S + 30)

    left = leftovers(tree, launcher.ports, timeout_s=GONE_TIMEOUT_S)
    assert not left, f"after {how}: {left}"
    if group:
        assert code == 0, launcher.output()
        assert "Stopped." in launcher.output()


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    ports = _ports()
    var = tmp_path / "var"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", ports["scorer"]))
        holder.listen()
        launched = _launch(var, ports)
        try:
            code = launched.proc.wait(60)
        finally:
            if launched.proc.poll() is None:
                launched.proc.kill()
                launched.proc.wait(30)
    out = launched.output()
    assert code == 1, out
    assert f"port {ports['scorer']} (scorer) is in use by pid {os.getpid()} (" in out
    assert "Ready." not in out and "Starting" not in out
    assert not var.exists(), "nothing may be started (not even PostgreSQL's data directory)"
    others = {name: port for name, port in ports.items() if name != "scorer"}
    assert not leftovers([], others, timeout_s=0)
