"""``csat replay``: rebuild every scorer counter from the stored ratings (after a formula, combination
or cap change), safe while the scorer runs; how is ``repository.replay``.

Usage: ``csat replay`` or ``python -m services.scorer.replay`` (``DATABASE_URL`` and the scorer's
``CSAT_*`` settings, e.g. ``CSAT_COMBINATIONS``, from the environment).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from services.scorer.repository.replay import Progress, ReplayBusy, Replayer, ReplayResult
from services.scorer.settings import ScorerSettings
from shared.db import make_engine


async def replay(
    *,
    database_url: str,
    settings: ScorerSettings,
    batch_size: int = 10_000,
    out: TextIO = sys.stdout,
) -> ReplayResult:
    engine = make_engine(database_url, application_name="csat-scorer-replay")
    try:

        def show(p: Progress) -> None:
            out.write(p.line() + "\n")
            out.flush()

        return await Replayer(engine, settings=settings, batch_size=batch_size, progress=show).run()
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="csat replay",
        description="Rebuild every scorer counter from the stored ratings (safe while the scorer runs).",
    )
    parser.add_argument("--batch-size", type=int, default=10_000, help="ratings per transaction")
    args = parser.parse_args(argv)
    settings = ScorerSettings()
    say = sys.stdout.write
    say(
        "rebuilding every counter from scorer.ratings (the scorer may keep running); combinations: "
        f"{', '.join(' x '.join(c) for c in settings.combos) or 'none'}\n"
    )
    try:
        result = asyncio.run(
            replay(database_url=settings.database_url, settings=settings, batch_size=args.batch_size)
        )
    except ReplayBusy as exc:
        sys.stderr.write(f"replay refused: {exc}\n")
        return 1
    say(
        f"replayed {result.ratings:,} ratings in {result.seconds:.1f} s ({result.passes} passes); "
        + ", ".join(f"{table}: {n:,} buckets" for table, n in result.buckets.items())
        + f"; {result.drift_states_reset:,} drift states reset (refolded by the scorer's next round)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
