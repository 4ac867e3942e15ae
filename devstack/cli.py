"""``csat``: the platform's command line (run the stack, migrate, create topics, replay the scorer)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def _cmd_replay(args: argparse.Namespace) -> int:
    if not os.environ.get("DATABASE_URL") and not os.environ.get("CSAT_DATABASE_URL"):
        print("set DATABASE_URL (and the scorer's CSAT_* settings, e.g. CSAT_COMBINATIONS)", file=sys.stderr)
        return 2
    from services.scorer.replay import main as replay_main

    return replay_main(["--batch-size", str(args.batch_size)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csat", description="CSAT platform command line")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole stack on this machine (embedded broker and Postgres)")
    run.add_argument("--var", default=str(ROOT / "var"), help="where data, logs and the outbox go")
    run.add_argument("--quiet", action="store_true", help="do not echo service logs")
    run.set_defaults(func=_cmd_run)
    sub.add_parser("migrate", help="apply database migrations (DATABASE_URL)").set_defaults(func=_cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics (KAFKA_BOOTSTRAP)").set_defaults(func=_cmd_topics)
    replay = sub.add_parser(
        "replay",
        help="rebuild the scorer's counters from its stored ratings (DATABASE_URL; safe while it runs)",
    )
    replay.add_argument("--batch-size", type=int, default=10_000, help="ratings per transaction")
    replay.set_defaults(func=_cmd_replay)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
