"""``csat``: the platform's command line (run the stack, migrate, create topics, import ratings)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from devstack.stack import ROOT, Stack, create_topics, run_forever, run_migrations
from shared.topics import Topics


def _cmd_run(args: argparse.Namespace) -> int:
    stack = Stack(
        var_dir=Path(args.var).resolve(),
        kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP") or None,
        database_url=os.environ.get("DATABASE_URL") or None,
        topic_prefix=os.environ.get("CSAT_TOPIC_PREFIX", ""),
        echo_logs=not args.quiet,
    )
    return run_forever(stack)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csat", description="CSAT platform command line")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole stack on this machine (embedded broker and Postgres)")
    run.add_argument("--var", default=str(ROOT / "var"), help="where data, logs and the outbox go")
    run.add_argument("--quiet", action="store_true", help="do not echo service logs")
    run.set_defaults(func=_cmd_run)
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)").set_defaults(func=_cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics (KAFKA_BOOTSTRAP)").set_defaults(func=_cmd_topics)
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
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
