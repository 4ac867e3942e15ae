"""Run the whole platform on one machine: broker, PostgreSQL, topics, migrations and five services.

Every process started here dies with the launcher, even a launcher killed hard (devstack.processes);
``make run`` checks its ports before starting anything and counts a service ready only when the
process it started answers (devstack.ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from devstack.broker import EmbeddedBroker
from devstack.ports import describe_holders, free_port, owns_listener, port_is_free
from devstack.postgres import EmbeddedPostgres
from devstack.processes import signal_group, spawn, stop_all
from shared.identity.accesstokens import KeyRing, SigningKey
from shared.provisioning import create_topics, run_migrations
from shared.topics import Topics

if TYPE_CHECKING:
    from services.console.provision import DevAdmin

ROOT = Path(__file__).resolve().parents[1]
DEV_LINK_MINUTES = 15
SERVICES = ("collector", "scorer", "actions", "notifier", "console")
DEFAULT_PORTS = {"collector": 8000, "scorer": 8001, "actions": 8002, "notifier": 8003, "console": 8004}
#: What the console calls, by the variable naming each service's base URL in its settings.
CONSOLE_TARGETS = {
    "CSAT_COLLECTOR_URL": "collector",
    "CSAT_SCORER_URL": "scorer",
    "CSAT_ACTIONS_URL": "actions",
    "CSAT_NOTIFIER_URL": "notifier",
}
BROKER_PORT, POSTGRES_PORT = 9092, 5432  # preferred; another free port when taken (unless set)
RUN_PORT_VARIABLES = {name: f"CSAT_RUN_{name.upper()}_PORT" for name in (*SERVICES, "broker", "postgres")}


def run_port_setting(name: str) -> int | None:
    """``CSAT_RUN_<NAME>_PORT`` for ``make run`` (a service, ``broker`` or ``postgres``), when set."""
    variable = RUN_PORT_VARIABLES[name]
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{variable}={raw!r} is not a port number (1-65535)")
    return int(raw)


def launcher_ports() -> dict[str, int]:
    """The services' ports of ``make run``: 8000-8004 unless ``CSAT_RUN_<SERVICE>_PORT`` moves one."""
    return {name: run_port_setting(name) or port for name, port in DEFAULT_PORTS.items()}


class StartAborted(Exception):
    """The launcher was asked to stop while it was still starting."""


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
        # SIGKILL when the launcher dies: consumers keep their offsets with their results, so a
        # killed service loses nothing (the fault suite kills them on purpose).
        self.proc = spawn(
            cmd,
            death_signal=signal.SIGKILL,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"log-{self.name}", daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._log is not None
        echo = self.echo
        for line in self.proc.stdout:  # drained to the end, or the child blocks on a full pipe
            self._log.write(line)
            self._log.flush()
            if echo:
                try:
                    sys.stdout.write(f"{self.name:>9} | {line.decode('utf-8', 'replace')}")
                    sys.stdout.flush()
                except (OSError, ValueError):  # terminal closed or pipe reader gone: keep the log file
                    echo = False

    def _exit_message(self, code: int | None) -> str:
        held = (
            "" if port_is_free(self.port) else f"; port {self.port} is in use {describe_holders(self.port)}"
        )
        return f"{self.name} exited with code {code}{held}; see {self.log_path}"

    def wait_ready(self, timeout_s: float = 60.0, *, abort: threading.Event | None = None) -> None:
        """Wait for ``/readyz`` answered by this process: a stranger listening on the port does not count."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if abort is not None and abort.is_set():
                raise StartAborted(f"{self.name}: start-up interrupted")
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(self._exit_message(self.proc.returncode))
            if self.proc is not None and not owns_listener(self.proc.pid, self.port):
                last = "not listening yet" if port_is_free(self.port) else "another process holds the port"
                time.sleep(0.1)
                continue
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        held = "" if port_is_free(self.port) else f" (port {self.port} is held {describe_holders(self.port)})"
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s: {last}{held}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        stop_all([proc], timeout_s=timeout_s)
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
    ports: Mapping[str, int] = field(default_factory=launcher_ports)
    broker_port: int | None = field(default_factory=lambda: run_port_setting("broker"))
    postgres_port: int | None = field(default_factory=lambda: run_port_setting("postgres"))
    extra_env: Mapping[str, str] = field(default_factory=dict)
    echo_logs: bool = False
    durable_postgres: bool = True
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    broker: EmbeddedBroker | None = None
    postgres: EmbeddedPostgres | None = None
    demo_key: str | None = None
    dev_admin: DevAdmin | None = None
    # A key pair per stack: the console signs people's access tokens, every service trusts its public key.
    signing_key: SigningKey = field(default_factory=SigningKey.generate)
    stopping: threading.Event = field(default_factory=threading.Event)

    def port_conflicts(self) -> list[str]:
        """Each port this stack must own that is given twice or held by another process, with its holder."""
        wanted = dict(self.ports)
        if self.kafka_bootstrap is None and self.broker_port is not None:
            wanted["broker"] = self.broker_port
        if self.database_url is None and self.postgres_port is not None:
            wanted["postgres"] = self.postgres_port
        problems = []
        owners: dict[int, str] = {}
        for name, port in wanted.items():
            if port in owners:
                problems.append(f"port {port} is given to both {owners[port]} and {name}")
            elif not port_is_free(port):
                problems.append(f"port {port} ({name}) is in use {describe_holders(port)}")
            owners.setdefault(port, name)
        return problems

    def _infra_port(self, fixed: int | None, preferred: int, what: str, note: Callable[[str], None]) -> int:
        if fixed is not None:
            return fixed
        if port_is_free(preferred):
            return preferred
        port = free_port()
        note(f"  {what:<11} port {preferred} is in use {describe_holders(preferred)}: using {port}")
        return port

    def _check_stopping(self) -> None:
        if self.stopping.is_set():
            raise StartAborted("start-up interrupted")

    def start_infrastructure(self, say: bool = False) -> None:
        def note(msg: str) -> None:
            _say(msg, say)

        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.kafka_bootstrap is None:
            port = self._infra_port(self.broker_port, BROKER_PORT, "broker", note)
            self.broker = EmbeddedBroker(port=port, log_path=self.var_dir / "logs" / "broker.log")
            self.kafka_bootstrap = self.broker.start()
            note(f"  broker      embedded Tansu (memory) on {self.kafka_bootstrap}")
        else:
            note(f"  broker      external {self.kafka_bootstrap}")
        self._check_stopping()
        if self.database_url is None:
            port = self._infra_port(self.postgres_port, POSTGRES_PORT, "postgres", note)
            self.postgres = EmbeddedPostgres(
                data_dir=self.var_dir / "pg", port=port, durable=self.durable_postgres
            )
            self.database_url = self.postgres.start()
            note(f"  postgres    embedded PostgreSQL on {self.database_url} (data in {self.var_dir / 'pg'})")
        else:
            note("  postgres    external (DATABASE_URL)")
        self._check_stopping()
        created = create_topics(self.kafka_bootstrap, Topics(self.topic_prefix))
        note(f"  topics      {len(created)} created, {len(Topics().all()) - len(created)} already there")
        run_migrations(self.database_url)
        note("  migrations  at head")
        self._check_stopping()
        if os.environ.get("CSAT_ENVIRONMENT", "dev") == "dev":
            from services.collector.provision import ensure_demo_source
            from services.console.provision import ensure_dev_admin

            port = self.ports["collector"]
            origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
            self.demo_key = asyncio.run(ensure_demo_source(self.database_url, origins=origins))
            note("  sources     demo source for the widget page (a new key each start)")
            self.dev_admin = asyncio.run(
                ensure_dev_admin(
                    self.database_url, console_url=self.console_url, link_minutes=DEV_LINK_MINUTES
                )
            )
            note("  people      dev admin with a new password and a one-time sign-in link (each start)")

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['console']}"

    def identity_env(self, name: str) -> dict[str, str]:
        """Every service trusts the stack's public key; the console also signs with the private one."""
        env = {"CSAT_IDENTITY_PUBLIC_KEYS": json.dumps(KeyRing.of([self.signing_key]).to_jwks())}
        if name == "console":
            env["CSAT_IDENTITY_SIGNING_KEY"] = self.signing_key.private_jwk()
            env["CSAT_PUBLIC_URL"] = self.console_url
            for variable, target in CONSOLE_TARGETS.items():
                env[variable] = f"http://127.0.0.1:{self.ports[target]}"
        if name == "actions":  # survey invitations link to the collector's one-click pages
            env["CSAT_SURVEY_LINK_BASE_URL"] = f"http://127.0.0.1:{self.ports['collector']}"
        return env

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
        for variable, value in self.identity_env(name).items():
            env.setdefault(variable, value)
        if name == "collector" and self.demo_key and env["CSAT_ENVIRONMENT"] == "dev":
            env.setdefault("CSAT_DEMO_WIDGET_KEY", self.demo_key)
        if name == "notifier" and env["CSAT_ENVIRONMENT"] != "prod" and "collector" in self.ports:
            # Survey SMS are registered with the collector (used with CSAT_SMS_PROVIDER=twilio), with the
            # dev key, which works outside prod only.
            env.setdefault("CSAT_COLLECTOR_URL", f"http://127.0.0.1:{self.ports['collector']}")
            env.setdefault("CSAT_COLLECTOR_TOKEN", "dev-admin-key")
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
            self.services[name].wait_ready(timeout_s, abort=self.stopping)

    def stop(self) -> None:
        """Stop the services together and wait for them, then PostgreSQL and the broker."""
        stop_all([svc.proc for svc in self.services.values() if svc.proc is not None])
        for svc in self.services.values():
            svc.stop()  # already stopped: joins the log pump, closes the log
        self.services.clear()
        if self.postgres is not None:
            self.postgres.stop()
        if self.broker is not None:
            self.broker.stop()

    def kill(self) -> None:
        """SIGKILL every process of the stack now (asked twice to stop); ``stop`` still waits for them."""
        procs = [svc.proc for svc in self.services.values() if svc.proc is not None]
        for proc in procs:
            signal_group(proc, signal.SIGKILL)
        for pid in (self.postgres.pid if self.postgres else None, self.broker.pid if self.broker else None):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def _say(message: str, say: bool = True, *, err: bool = False) -> None:
    """Print for a person; a closed terminal or a gone pipe reader must not stop the launcher's work."""
    if not say:
        return
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr if err else sys.stdout, flush=True)


def run_forever(stack: Stack) -> int:
    """``make run``: check the ports, start everything, print where it is, stop it all on a signal."""
    # Ctrl-C (SIGINT), SIGTERM (a script, a supervisor) and a closed terminal (SIGHUP) stop the stack in
    # order and wait for it; a second signal kills what is left at once. A launcher killed hard takes
    # its children with it (devstack.processes).
    asked = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal asked
        asked += 1
        if asked > 1:
            stack.kill()
        stack.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    conflicts = stack.port_conflicts()
    if conflicts:
        variables = ", ".join(RUN_PORT_VARIABLES[name] for name in SERVICES)
        reasons = "".join(f"\n  {c}" for c in conflicts)
        _say(f"Not starting: a port is taken, nothing was started.{reasons}", err=True)
        _say(f"Stop what holds it, or choose other ports ({variables}).", err=True)
        return 1
    _say("Starting the CSAT platform ...")
    code = 0
    try:
        stack.start_infrastructure(say=True)
        stack.start_services()
        _say(_banner(stack))
        while not stack.stopping.wait(1.0):
            for svc in stack.services.values():
                if svc.proc is not None and svc.proc.poll() is not None:
                    _say(f"{svc.name} exited with code {svc.proc.returncode}; stopping.")
                    code = 1
                    stack.stopping.set()
    except StartAborted:
        pass
    except Exception as exc:  # noqa: BLE001 - whatever failed, say it plainly and stop what was started
        _say(f"start-up failed: {exc}", err=True)
        code = 1
    finally:
        _say("Stopping ...")
        stack.stop()
        _say("Stopped.")
    return code


def _banner(stack: Stack) -> str:
    c, s, a, n, k = (stack.services[x].url for x in SERVICES)
    return f"""
Ready. Everything stops with Ctrl-C.

  console    {k}   people sign in here{_console_sign_in(stack)}
  collector  {c}   POST /v1/ratings, POST /v1/ratings/batch   docs: {c}/docs
             widget demo: {c}/demo   (source "demo", public key {stack.demo_key or "-"})
  scorer     {s}   GET /v1/scores?metric=csat&window=30d          docs: {s}/docs
  actions    {a}   GET /v1/alerts, /v1/rules, /v1/customers/{{id}}  docs: {a}/docs
  notifier   {n}   GET /v1/outbox (messages as files in {stack.var_dir / "outbox"})
  metrics    /metrics on every service; logs in {stack.var_dir / "logs"}

Every route with data needs a credential, in dev too. The dev API token (admin, valid 24 h, a new one
each start; the dev key dev-admin-key works too, outside prod only):
  export CSAT_TOKEN={_dev_token(stack)}

Try:
  curl -s -XPOST {c}/v1/ratings -H 'content-type: application/json' \\
    -d '{{"metric":"csat","scale":"1-5","score":1,"customer":{{"id":"c-1"}},"segment":{{"store":"paris-1"}}}}'
  curl -s -H "Authorization: Bearer $CSAT_TOKEN" '{s}/v1/scores?metric=csat&window=30d&segment=store:paris-1'
  curl -s -H "Authorization: Bearer $CSAT_TOKEN" '{n}/v1/outbox'
  curl -s -H "Authorization: Bearer $CSAT_TOKEN" {c}/v1/sources
  csat import past-answers.csv --url {c}       # historical CSV import (dev needs no key)
"""


def _console_sign_in(stack: Stack) -> str:
    """The dev admin's one-click link and password (dev only: nothing is printed otherwise)."""
    admin = stack.dev_admin
    if admin is None:
        return ""
    return (
        f"\n             one-time sign-in link (dev admin, valid {DEV_LINK_MINUTES} min, works once):"
        f"\n               {admin.link_url}"
        f"\n             or sign in with {admin.email} / {admin.password}  (a new password each start)"
    )


def _dev_token(stack: Stack) -> str:
    """The dev API token (dev only, a new one each start), or the dev key when there is none."""
    return stack.dev_admin.api_token if stack.dev_admin is not None else "dev-admin-key"
