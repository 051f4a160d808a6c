"""An example contract-net bidder: prices a task from its own load and capabilities.

Run in a Pod made by the operator. Its settings (Pod env):

- ``WORKER_RATE``: its cost per unit of work (default 1.0);
- ``WORKER_CAPACITY``: how many tasks it holds at once (default 1);
- ``WORKER_SPECIALTIES``: capabilities it is especially good at (comma-separated): a task
  calling for one of them costs half.

The work in a task is the number of words of its description. The bid grows with the load
(tasks it holds): ``rate * work * (1 + load)``, halved for a specialty. A worker at capacity does
not bid; one that won a bid but filled up meanwhile (another session awarded it first) declines.
"""

from __future__ import annotations

import logging
import os
import threading

from mabeam.sdk import AgentApp, Task

app = AgentApp()
log = logging.getLogger("worker")

_lock = threading.Lock()
_held: set[str] = set()  # the sessions whose task this worker confirmed


def capacity() -> int:
    return int(os.environ.get("WORKER_CAPACITY", "1"))


def price(task: Task, load: int) -> float:
    rate = float(os.environ.get("WORKER_RATE", "1.0"))
    specialties = {s.strip() for s in os.environ.get("WORKER_SPECIALTIES", "").split(",") if s.strip()}
    work = max(len(task.description.split()), 1)
    cost = rate * work * (1 + load)
    return cost / 2 if task.capability in specialties else cost


@app.on_call_for_proposals
def bid(task: Task) -> float | None:
    with _lock:
        load = len(_held)
    if load >= capacity():
        log.info("session %s: at capacity (%d), no bid", task.session, load)
        return None
    cost = price(task, load)
    log.info("session %s: bidding %g (load %d)", task.session, cost, load)
    return cost


@app.on_award
def confirm(task: Task) -> bool:
    with _lock:
        if len(_held) >= capacity():
            log.info("session %s: award declined, at capacity", task.session)
            return False
        _held.add(task.session)
    log.info("session %s: award confirmed at cost %s", task.session, task.cost)
    return True


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run()
