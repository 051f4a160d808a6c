"""The real operator, in a process that SIGKILLs itself right after it creates a Pod.

Run as ``python -m tests.integration._faulty_operator --kubeconfig FILE``: it proves that a
crash between creating a child and recording it in status is recovered by the next operator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

from mabeam import controller
from mabeam.kube.client import Kube
from mabeam.kube.resources import POD


class DiesAfterPodCreate(Kube):
    async def create(self, res: Any, body: Any) -> dict[str, Any]:
        result = await super().create(res, body)
        if res is POD:
            os.kill(os.getpid(), signal.SIGKILL)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--liveness", required=True)
    args = parser.parse_args()
    runtime = controller.Runtime(kubeconfig=args.kubeconfig, kube_factory=DiesAfterPodCreate)
    asyncio.run(controller.run(runtime=runtime, liveness_endpoint=args.liveness))


if __name__ == "__main__":
    main()
