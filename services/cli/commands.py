"""``csat``: the platform's production command line, the image's entrypoint (one command per pod or Job)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.provisioning import ROOT, create_topics, run_migrations
from shared.topics import Topics

SERVICES = ("collector", "scorer", "actions", "notifier", "console")
DLQ_CONSUMERS = ("scorer", "actions", "notifier", "collector")


def _cmd_migrate(_args: argparse.Namespace) -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("set DATABASE_URL", file=sys.stderr)
        return 2
    run_migrations(url)
    print("migrations at head")
    return 0


def _cmd_topics(_args: argparse.Namespace) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    created = create_topics(bootstrap, Topics(os.environ.get("CSAT_TOPIC_PREFIX", "")))
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    """List or re-drive one consumer's dead letters (docs/operations.md, "Dead letters")."""
    from services.cli import dlq

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    topics = Topics(os.environ.get("CSAT_TOPIC_PREFIX", ""))
    topic = {
        "scorer": topics.dlq_scorer,
        "actions": topics.dlq_actions,
        "notifier": topics.dlq_notifier,
        "collector": topics.dlq_collector,  # its erasure consumer's
    }[args.consumer]
    letters = asyncio.run(dlq.read_letters(bootstrap=bootstrap, topic=topic))
    chosen = dlq.select(letters, refs=set(args.only or ()) or None, kind=args.reason)
    for x in chosen:
        d = x.letter
        print(f"{x.ref:>10}  {x.kind:<20} {d.topic}[{d.partition}]@{d.offset}  {d.reason[:160]}")
    if args.action == "list":
        print(f"{len(chosen)} of {len(letters)} dead letter(s) in {topic}")
        return 0
    if args.dry_run:
        print(f"would re-drive {len(chosen)} record(s)")
        return 0
    sent = asyncio.run(dlq.redrive(bootstrap=bootstrap, letters=chosen))
    print(f"re-drove {sent} record(s) to their original topics")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """One service in the foreground: the container entrypoint (one process per pod).

    With ``--internal-port`` (``CSAT_INTERNAL_PORT``) the one process listens on both ports: the app
    serves health, readiness, metrics and the OpenAPI documents on the internal one only
    (``shared.listeners``)."""
    import uvicorn

    options = {
        "host": args.host,
        "port": args.port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "timeout_graceful_shutdown": 20,
        "log_level": "warning",
        # No logging config of uvicorn's own: the app's (shared.logs) scrubs every line, uvicorn's too.
        "log_config": None,
    }
    app = f"services.{args.service}.main:app"
    if args.internal_port is None:
        uvicorn.run(app, **options)
        return 0
    if args.internal_port == args.port:
        print("--internal-port must differ from --port", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, **options)
    public = config.bind_socket()
    config.port = args.internal_port
    internal = config.bind_socket()
    config.port = args.port
    uvicorn.Server(config).run(sockets=[public, internal])
    return 0


def _cmd_contracts(args: argparse.Namespace) -> int:
    from shared.contracts import render_files

    out = Path(args.dir)
    files = render_files()
    if args.check:
        stale = [p for p, text in files.items() if not (out / p).is_file() or (out / p).read_text() != text]
        extra = sorted(
            str(p.relative_to(out))
            for p in (out / "schemas").glob("*.json")
            if str(p.relative_to(out)) not in files
        )
        for p in [*stale, *extra]:
            print(f"stale: {out / p}", file=sys.stderr)
        if stale or extra:
            print("run `make contracts` and commit the result", file=sys.stderr)
            return 1
        print(f"{len(files)} contract file(s) up to date")
        return 0
    for p, text in files.items():
        (out / p).parent.mkdir(parents=True, exist_ok=True)
        (out / p).write_text(text)
    print(f"wrote {len(files)} file(s) to {out}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Exit 0 when every row was imported, 1 when some were rejected, 2 when the import failed."""
    import httpx

    from services.collector.importer import ImportFailed, import_csv

    renames = {}
    for pair in args.column:
        old, sep, new = pair.partition("=")
        if not sep:
            print(f"--column wants OLD=NEW, got {pair!r}", file=sys.stderr)
            return 2
        renames[old] = new
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except ZoneInfoNotFoundError:
        print(f"unknown time zone {args.timezone!r}", file=sys.stderr)
        return 2

    async def go() -> int:
        async with httpx.AsyncClient(base_url=args.url, timeout=60) as client:
            report = await import_csv(
                Path(args.file),
                client=client,
                key=args.key or os.environ.get("CSAT_API_KEY") or None,
                batch_size=args.batch_size,
                renames=renames,
                default_tz=tz,
                dry_run=args.dry_run,
                progress=not args.no_progress,
                attempts=args.retries,
            )
        print(("checked (dry run): " if args.dry_run else "") + report.summary())
        if args.rejects:
            report.write_rejects(Path(args.rejects))
            print(f"rejected rows written to {args.rejects}")
        return 1 if report.rejected else 0

    try:
        return asyncio.run(go())
    except ImportFailed as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 2


def _cmd_replay(args: argparse.Namespace) -> int:
    if not os.environ.get("DATABASE_URL") and not os.environ.get("CSAT_DATABASE_URL"):
        print("set DATABASE_URL (and the scorer's CSAT_* settings, e.g. CSAT_COMBINATIONS)", file=sys.stderr)
        return 2
    from services.scorer.replay import main as replay_main

    return replay_main(["--batch-size", str(args.batch_size)])


def _cmd_retention(args: argparse.Namespace) -> int:
    from services.cli.retention import main as retention_main

    return retention_main(args.service)


Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_serve(sub: Subcommands) -> None:
    serve = sub.add_parser("serve", help="run one service (the container entrypoint)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--host", default=os.environ.get("CSAT_HOST", "127.0.0.1"), help="env CSAT_HOST")
    serve.add_argument(
        "--port", type=int, default=int(os.environ.get("CSAT_PORT", "8000")), help="env CSAT_PORT"
    )
    internal = os.environ.get("CSAT_INTERNAL_PORT")
    serve.add_argument(
        "--internal-port",
        type=int,
        default=int(internal) if internal else None,
        help="health, readiness, metrics and API documents on this port only (env CSAT_INTERNAL_PORT)",
    )
    serve.set_defaults(func=_cmd_serve)


def _add_dlq(sub: Subcommands) -> None:
    dead = sub.add_parser("dlq", help="list or re-drive a consumer's dead letters (KAFKA_BOOTSTRAP)")
    dead.add_argument("action", choices=["list", "redrive"])
    dead.add_argument("consumer", choices=DLQ_CONSUMERS)
    dead.add_argument(
        "--only", nargs="*", metavar="PARTITION:OFFSET", help="dead letters to take (as listed)"
    )
    dead.add_argument("--reason", help="only this reason kind (e.g. invalid_data)")
    dead.add_argument("--dry-run", action="store_true", help="show what would be re-driven")
    dead.set_defaults(func=_cmd_dlq)


def _add_contracts(sub: Subcommands) -> None:
    contracts = sub.add_parser("contracts", help="write the JSON Schemas and AsyncAPI document (contracts/)")
    contracts.add_argument("--dir", default=str(ROOT / "contracts"))
    contracts.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    contracts.set_defaults(func=_cmd_contracts)


def _add_import(sub: Subcommands) -> None:
    imp = sub.add_parser(
        "import",
        help="load a CSV export of past survey answers through the collector's validation",
        description="Columns: rating_id, metric, scale, score, customer_id, customer_email, customer_phone, "
        "customer_locale, segment.<name>, touchpoint, comment, account_id, account_tier, account_value, "
        "occurred_at, consent_contact, consent_review, survey_id. Re-running is safe: rows without a "
        "rating_id get one derived from their content.",
    )
    imp.add_argument("file", help="the CSV file (comma, semicolon or tab separated; UTF-8)")
    imp.add_argument("--url", default=os.environ.get("CSAT_COLLECTOR_URL", "http://127.0.0.1:8000"))
    imp.add_argument("--key", help="a source key (default: $CSAT_API_KEY; dev accepts none)")
    imp.add_argument("--batch-size", type=int, default=500)
    imp.add_argument("--column", action="append", default=[], metavar="OLD=NEW", help="rename a column")
    imp.add_argument("--timezone", help="for timestamps without an offset, e.g. Europe/Paris")
    imp.add_argument("--rejects", metavar="FILE", help="write every rejected row (line, field, reason) here")
    imp.add_argument("--dry-run", action="store_true", help="only check the rows, send nothing")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.add_argument("--retries", type=int, default=8, help="attempts per batch on 429/503/unreachable")
    imp.set_defaults(func=_cmd_import)


def _add_replay(sub: Subcommands) -> None:
    replay = sub.add_parser(
        "replay",
        help="rebuild the scorer's counters from its stored ratings (DATABASE_URL; safe while it runs)",
    )
    replay.add_argument("--batch-size", type=int, default=10_000, help="ratings per transaction")
    replay.set_defaults(func=_cmd_replay)


def parser() -> argparse.ArgumentParser:
    """Every ``csat`` subcommand, each bound to the function that runs it (``args.func``)."""
    top = argparse.ArgumentParser(prog="csat", description="CSAT platform command line")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)").set_defaults(func=_cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics (KAFKA_BOOTSTRAP)").set_defaults(func=_cmd_topics)
    _add_dlq(sub)
    _add_serve(sub)
    _add_contracts(sub)
    _add_import(sub)
    _add_replay(sub)
    retention = sub.add_parser(
        "retention",
        help="remove comments and contact data past their retention now (DATABASE_URL, CSAT_RETENTION_*)",
    )
    retention.add_argument("service", choices=("collector", "scorer", "actions", "notifier"))
    retention.set_defaults(func=_cmd_retention)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code
