"""Readiness probe for agent Pods: exit 0 once the SDK has reached the API, 1 before.

Use it as ``readinessProbe: {exec: {command: [python, -m, mabeam.sdk.probe]}}``.
"""

from __future__ import annotations

import os
import sys

from ._app import default_ready_file


def main() -> int:
    path = default_ready_file()
    return 0 if path and os.path.exists(path) else 1


if __name__ == "__main__":
    sys.exit(main())
