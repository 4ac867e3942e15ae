"""The baseline the scorer is measured against: a bare aiokafka consumer that only decodes the JSON.

Run as its own process (``python -m bench.bare_consumer``) under uvloop like the scorer, with the
scorer's own consumer settings (``shared.kafka.make_consumer``: read_committed, fetch wait, records per
poll); prints one JSON line: records, seconds from the first record to the last, records/s, and the
process's CPU time over that window per record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import uvloop

from shared.kafka import make_consumer


async def consume(
    *, bootstrap: str, topic: str, expected: int, max_batch: int, timeout_s: float
) -> dict[str, float]:
    consumer = make_consumer(
        bootstrap=bootstrap,
        group_id=f"bare-{topic}-{time.monotonic_ns()}",
        client_id="bench-bare",
        max_poll_records=max_batch,
        session_timeout_ms=3000,
        heartbeat_ms=500,
    )
    await consumer.start()
    consumer.subscribe([topic])
    seen = at_first = 0
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=max_batch)
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                    seen += 1
            if seen and not first:
                # The clock starts once the group is joined and data flows, as for the scorer.
                first, at_first, cpu_first = time.perf_counter(), seen, time.process_time()
            last, cpu_last = time.perf_counter(), time.process_time()
    finally:
        await consumer.stop()
    elapsed = max(last - first, 1e-9)
    counted = max(seen - at_first, 1)
    return {
        "records": seen,
        "seconds": elapsed,
        "per_s": (seen - at_first) / elapsed,
        "cpu_us_per_event": (cpu_last - cpu_first) / counted * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    result = uvloop.run(
        consume(
            bootstrap=args.bootstrap,
            topic=args.topic,
            expected=args.expected,
            max_batch=args.max_batch,
            timeout_s=args.timeout,
        )
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["records"] >= args.expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
