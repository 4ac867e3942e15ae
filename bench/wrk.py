"""HTTP throughput and latency with wrk (Debian package; installed on first use when missing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import say

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
%s

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"p50_us\\":%%d,\\"p90_us\\":%%d,\\"p99_us\\":%%d," ..
    "\\"max_us\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"status\\":%%d,\\"timeout\\":%%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def ensure_wrk() -> str:
    """wrk from Debian: the bench installs it when it is missing (root on these machines)."""
    found = shutil.which("wrk")
    if found:
        return found
    say("installing wrk (apt-get)")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)  # noqa: S607
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)  # noqa: S607
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)  # noqa: S607
        found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    non_2xx: int

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "per_s": self.per_s}


#: Each request carries its own ``Idempotency-Key`` (prefix + a counter in wrk's Lua state): every
#: request is then a new rating that the collector must claim, as a client retrying safely would send.
_UNIQUE_KEY = """
local counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = "%s-" .. counter
  return wrk.format()
end
"""


def _lua_string(text: str) -> str:
    if not all(c.isalnum() or c in "-_. " for c in text):
        raise ValueError(f"not a plain token: {text!r}")
    return text


def run_wrk(
    url: str,
    *,
    body: str,
    seconds: float,
    connections: int,
    threads: int = 1,
    timeout_s: float = 10,
    headers: dict[str, str] | None = None,
    unique_key_prefix: str | None = None,
) -> WrkResult:
    """POST ``body`` to ``url`` from ``connections`` keep-alive connections (closed loop) for ``seconds``.

    ``headers`` are sent with every request; ``unique_key_prefix`` gives each request an
    ``Idempotency-Key`` of its own (``<prefix>-<n>``; one wrk thread, so one counter).
    """
    wrk = ensure_wrk()
    extra = "".join(
        f'wrk.headers["{_lua_string(k)}"] = "{_lua_string(v)}"\n' for k, v in (headers or {}).items()
    )
    if unique_key_prefix is not None:
        if threads != 1:
            raise ValueError("unique keys need one wrk thread (one counter)")
        extra += _UNIQUE_KEY % _lua_string(unique_key_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_SCRIPT % (body, extra))
        out = subprocess.run(  # noqa: S603 - wrk with arguments we built
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                f"--timeout={int(timeout_s)}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        non_2xx=raw["status"],
    )
