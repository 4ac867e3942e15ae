"""Run the whole platform on one machine: broker, PostgreSQL, topics, migrations and four services."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from devstack.broker import EmbeddedBroker
from devstack.ports import preferred_port
from devstack.postgres import EmbeddedPostgres
from shared.provisioning import create_topics, run_migrations
from shared.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("collector", "scorer", "actions", "notifier")
DEFAULT_PORTS = {"collector": 8000, "scorer": 8001, "actions": 8002, "notifier": 8003}


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    echo: bool = False
    app: str | None = None  # ASGI path; default services.<name>.main:app (benchmarks run a baseline app)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    _pump: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app or f"services.{self.name}.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "10",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._log is not None
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            if self.echo:
                sys.stdout.write(f"{self.name:>9} | {line.decode('utf-8', 'replace')}")
                sys.stdout.flush()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode}; see {self.log_path}"
                )
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s: {last}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if self._pump is not None:
            self._pump.join(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Stack:
    """The platform on loopback. External broker/DB are used when their URLs are given."""

    var_dir: Path = ROOT / "var"
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    topic_prefix: str = ""
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: Mapping[str, str] = field(default_factory=dict)
    echo_logs: bool = False
    durable_postgres: bool = True
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    demo_key: str | None = None

    def start_infrastructure(self, say: bool = False) -> None:
        def note(msg: str) -> None:
            if say:
                print(msg, flush=True)

        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.kafka_bootstrap is None:
            self.broker = EmbeddedBroker(
                port=preferred_port(9092), log_path=self.var_dir / "logs" / "broker.log"
            )
            self.kafka_bootstrap = self.broker.start()
            note(f"  broker      embedded Tansu (memory) on {self.kafka_bootstrap}")
        else:
            note(f"  broker      external {self.kafka_bootstrap}")
        if self.database_url is None:
            self.postgres = EmbeddedPostgres(
                data_dir=self.var_dir / "pg", port=preferred_port(5432), durable=self.durable_postgres
            )
            self.database_url = self.postgres.start()
            note(f"  postgres    embedded PostgreSQL on {self.database_url} (data in {self.var_dir / 'pg'})")
        else:
            note("  postgres    external (DATABASE_URL)")
        created = create_topics(self.kafka_bootstrap, Topics(self.topic_prefix))
        note(f"  topics      {len(created)} created, {len(Topics().all()) - len(created)} already there")
        run_migrations(self.database_url)
        note("  migrations  at head")
        if os.environ.get("CSAT_ENVIRONMENT", "dev") == "dev":
            from services.collector.provision import ensure_demo_source

            port = self.ports["collector"]
            origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
            self.demo_key = asyncio.run(ensure_demo_source(self.database_url, origins=origins))
            note("  sources     demo source for the widget page (a new key each start)")

    def service_env(self, name: str) -> dict[str, str]:
        assert self.kafka_bootstrap is not None
        assert self.database_url is not None
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "CSAT_TOPIC_PREFIX": self.topic_prefix,
            "CSAT_PORT": str(self.ports[name]),
            "CSAT_OUTBOX_DIR": str(self.var_dir / "outbox"),
            "PYTHONUNBUFFERED": "1",
        }
        env.setdefault("CSAT_ENVIRONMENT", "dev")
        if name == "collector" and self.demo_key and env["CSAT_ENVIRONMENT"] == "dev":
            env.setdefault("CSAT_DEMO_WIDGET_KEY", self.demo_key)
        # Tansu assigns partitions about half a session timeout after a join: keep it short locally.
        env.setdefault("CSAT_KAFKA_SESSION_TIMEOUT_MS", "6000")
        env.setdefault("CSAT_KAFKA_HEARTBEAT_MS", "1000")
        env.update(self.extra_env)
        return env

    def start_service(self, name: str) -> ServiceProcess:
        svc = ServiceProcess(
            name=name,
            port=self.ports[name],
            env=self.service_env(name),
            log_path=self.var_dir / "logs" / f"{name}.log",
            echo=self.echo_logs,
        )
        svc.start()
        self.services[name] = svc
        return svc

    def start_services(self, names: tuple[str, ...] = SERVICES, timeout_s: float = 90.0) -> None:
        for name in names:
            self.start_service(name)
        for name in names:
            self.services[name].wait_ready(timeout_s)

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.services.clear()
        if self.postgres is not None:
            self.postgres.stop()
        if self.broker is not None:
            self.broker.stop()


def run_forever(stack: Stack) -> int:
    """``make run``: start everything, print where it is, stop it all on Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("Starting the CSAT platform ...", flush=True)
    code = 0
    try:
        stack.start_infrastructure(say=True)
        stack.start_services()
        c, s, a, n = (stack.services[x].url for x in SERVICES)
        print(
            f"""
Ready. Everything stops with Ctrl-C.

  collector  {c}   POST /v1/ratings, POST /v1/ratings/batch   docs: {c}/docs
             widget demo: {c}/demo   (source "demo", public key {stack.demo_key or "-"})
             admin (dev key): curl -H 'Authorization: Bearer dev-admin-key' {c}/v1/sources
  scorer     {s}   GET /v1/scores?metric=csat&window=30d          docs: {s}/docs
  actions    {a}   GET /v1/alerts, /v1/rules, /v1/customers/{{id}} (admin key)  docs: {a}/docs
  notifier   {n}   GET /v1/outbox (messages as files in {stack.var_dir / "outbox"})
  metrics    /metrics on every service; logs in {stack.var_dir / "logs"}

Try:
  curl -s -XPOST {c}/v1/ratings -H 'content-type: application/json' \\
    -d '{{"metric":"csat","scale":"1-5","score":1,"customer":{{"id":"c-1"}},"segment":{{"store":"paris-1"}}}}'
  curl -s '{s}/v1/scores?metric=csat&window=30d&segment=store:paris-1'
  curl -s '{n}/v1/outbox'
  csat import past-answers.csv --url {c}       # historical CSV import (dev needs no key)
""",
            flush=True,
        )
        while not stop.wait(1.0):
            for svc in stack.services.values():
                if svc.proc is not None and svc.proc.poll() is not None:
                    print(f"{svc.name} exited with code {svc.proc.returncode}; stopping.", flush=True)
                    code = 1
                    stop.set()
    except Exception as exc:  # noqa: BLE001 - whatever failed, say it plainly and stop what was started
        print(f"start-up failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        print("Stopping ...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return code
