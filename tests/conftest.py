"""Session-wide test setup."""

from __future__ import annotations

import asyncio

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The looptime plugin (installed, not used here) asks the event loop policy for the current
    # loop before every async test. Before any loop was ever set in the main thread, the policy
    # then *creates* one, sets it as current and nobody closes it; the first asyncio.Runner that
    # finishes replaces it, and whichever test runs during the next full garbage collection
    # fails with "unclosed event loop" (warnings are errors) — usually an allocation-heavy
    # hypothesis test such as the contract-net award test. Marking "no current loop" up front
    # makes the policy raise instead (looptime handles that), so no loop is made behind our back.
    asyncio.set_event_loop(None)
