"""The attack suite (tests/security/attacks.py) against the real API server and the installed chart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mabeam.kube.client import Kube
from tests.e2e._helpers import E2E
from tests.security._plane import Plane
from tests.security.attacks import ATTACKS, Attack


@pytest.fixture
async def plane(e2e: E2E, kube: Kube, ns: str, tmp_path: Path) -> AsyncIterator[Plane]:
    attacked = Plane(e2e.kubeconfig, ns, tmp_path, kube)
    try:
        yield attacked
    finally:
        await attacked.close()


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__.removeprefix("attack_"))
async def test_attack_is_refused(plane: Plane, attack: Attack) -> None:
    await attack(plane)
