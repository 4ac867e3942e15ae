"""``python -m devstack run`` (``make run``): the whole platform on this machine, in the foreground."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from devstack.stack import ROOT, Stack, run_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="CSAT development stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the whole stack on this machine (embedded broker and Postgres)")
    run.add_argument("--var", default=str(ROOT / "var"), help="where data, logs and the outbox go")
    run.add_argument("--quiet", action="store_true", help="do not echo service logs")
    args = parser.parse_args(argv)
    stack = Stack(
        var_dir=Path(args.var).resolve(),
        kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP") or None,
        database_url=os.environ.get("DATABASE_URL") or None,
        topic_prefix=os.environ.get("CSAT_TOPIC_PREFIX", ""),
        echo_logs=not args.quiet,
    )
    return run_forever(stack)


if __name__ == "__main__":
    raise SystemExit(main())
