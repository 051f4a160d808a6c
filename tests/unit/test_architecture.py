"""The tree, its map in docs/architecture.md and the public surface agree."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mabeam"
DOC = (ROOT / "docs" / "architecture.md").read_text()
README = (ROOT / "README.md").read_text()
MAX_LINES = 500


def _packages() -> set[str]:
    """Every package of the tree, and the top-level modules, as paths: mabeam/, mabeam/kube/..."""
    found = {"mabeam/"}
    for init in PACKAGE.rglob("__init__.py"):
        if "__pycache__" not in init.parts:
            found.add(init.parent.relative_to(ROOT).as_posix() + "/")
    found |= {f"mabeam/{p.name}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    return found


def _mapped(text: str) -> set[str]:
    """The paths in the first column of the map's table."""
    return set(re.findall(r"^\| `(mabeam/[\w/.]*)` \|", text, flags=re.MULTILINE))


def test_the_map_names_every_package_and_nothing_else() -> None:
    assert _mapped(DOC) == _packages()


def test_the_readme_draws_the_same_map() -> None:
    assert _mapped(README) == _packages()


def test_every_long_module_has_a_stated_reason() -> None:
    listed = set(re.findall(r"^- `(mabeam/[\w/]+\.py)`:", DOC, flags=re.MULTILINE))
    long = {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*.py")
        if len(p.read_text().splitlines()) > MAX_LINES
    }
    assert long <= listed, f"past {MAX_LINES} lines with no reason in docs/architecture.md: {long - listed}"
    assert listed <= long, f"listed in docs/architecture.md but no longer long: {listed - long}"


def test_every_path_the_docs_name_exists() -> None:
    for path in re.findall(r"`(mabeam/[\w/]+(?:\.py|/))`", DOC + README):
        assert (ROOT / path).exists(), path


PUBLIC = {
    "mabeam": [
        "AccessDeniedError",
        "ApiError",
        "ConflictError",
        "InvalidSpecError",
        "LockError",
        "MabeamError",
        "__version__",
        "errors",
        "models",
    ],
    "mabeam.sdk": [
        "AgentApp",
        "AuctionView",
        "Context",
        "MarketView",
        "Session",
        "Task",
        "VariableValue",
        "Variables",
    ],
    "mabeam.cli": ["build_parser", "main"],
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_public_surface_is_explicit(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(PUBLIC[name])
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.__all__ names {attr}, which it lacks"
