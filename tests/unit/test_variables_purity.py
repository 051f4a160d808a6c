"""The Variable core stays pure: importing it pulls in no Kubernetes client, kopf or HTTP stack."""

from __future__ import annotations

import subprocess
import sys

SHELL = ("kopf", "lightkube", "aiohttp", "kubernetes", "httpx", "mabeam.controller", "mabeam.sdk")


def test_the_core_imports_no_io_shell() -> None:
    probe = (
        "import sys, mabeam.core.variables, mabeam.core.selectors, mabeam.models.variable\n"
        f"print(sorted(m for m in sys.modules if m.startswith({SHELL!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
