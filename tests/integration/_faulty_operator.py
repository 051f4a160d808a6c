"""The real operator, in a process that SIGKILLs itself at a chosen request.

Run as ``python -m tests.integration._faulty_operator --kubeconfig FILE``: it kills itself right
after it creates a Pod, which proves that a crash between creating a child and recording it in
status is recovered by the next operator. With ``--crash-after N`` it kills itself right after
its N-th mutating request (create, patch, replace, delete) was answered instead: run with
N = 1, 2, 3, ... from one state, it crashes at every request of what it does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
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


class DiesAfterRequests(Kube):
    """Counts mutating requests; SIGKILL right after the answer to the N-th (``MABEAM_CRASH_AFTER``).

    Before dying it prints ``crash after <verb> <resource> <name>`` on stderr (the operator log).
    """

    done = 0

    def _count(self, verb: str, res: Any, name: str) -> None:
        DiesAfterRequests.done += 1
        if DiesAfterRequests.done >= int(os.environ["MABEAM_CRASH_AFTER"]):
            print(f"crash after {verb} {res.plural} {name}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    async def create(self, res: Any, body: Any) -> dict[str, Any]:
        result = await super().create(res, body)
        self._count("create", res, body.get("metadata", {}).get("name", ""))
        return result

    async def patch(self, res: Any, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result = await super().patch(res, name, *args, **kwargs)
        self._count("patch", res, name + ("/status" if kwargs.get("status") else ""))
        return result

    async def replace(self, res: Any, body: Any) -> dict[str, Any]:
        result = await super().replace(res, body)
        self._count("replace", res, body.get("metadata", {}).get("name", ""))
        return result

    async def delete(self, res: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        result = await super().delete(res, name, *args, **kwargs)
        self._count("delete", res, name)
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--liveness", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    args = parser.parse_args()
    factory: type[Kube] = DiesAfterPodCreate
    if args.crash_after:
        os.environ["MABEAM_CRASH_AFTER"] = str(args.crash_after)
        factory = DiesAfterRequests
    runtime = controller.Runtime(kubeconfig=args.kubeconfig, kube_factory=factory)
    asyncio.run(controller.run(runtime=runtime, liveness_endpoint=args.liveness))


if __name__ == "__main__":
    main()
