"""Where the operations tools are (installed by `make ops-tools`); a missing tool fails, never skips."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"

_LOCAL = {
    "kubernetes-validate": TOOLS / "ops" / "bin" / "kubernetes-validate",
    "checkov": TOOLS / "ops" / "bin" / "checkov",
}

#: Where `make ops-tools` installs the AsyncAPI parser (deploy/tools/asyncapi/package-lock.json).
NODE_MODULES = TOOLS / "node" / "node_modules"


def tool(name: str) -> str:
    """Absolute path of a tool; an AssertionError that says how to install it when it is missing."""
    local = _LOCAL.get(name)
    if local is not None and local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run `make ops-tools`")
    return found


def run(
    *args: str, cwd: Path = ROOT, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output as text (the caller asserts on the return code)."""
    return subprocess.run(
        [tool(args[0]), *args[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@functools.cache
def render(overlay: str) -> str:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>``."""
    out = run("kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay))
    assert out.returncode == 0, out.stderr
    return out.stdout
