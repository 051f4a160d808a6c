"""The tree, its map in docs/architecture.md and the public surface agree."""

from __future__ import annotations

import importlib
import re
import tomllib
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


def _layers_drawn(text: str) -> str:
    """The diagram of the layers: the code block after "Top to bottom"."""
    match = re.search(r"^Top to bottom.*?\n```\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "no layer diagram"
    return match.group(1)


def test_the_readme_draws_the_same_layers_as_the_contract() -> None:
    assert _layers_drawn(README) == _layers_drawn(DOC)
    drawn = [line.split("  ")[0].strip() for line in _layers_drawn(DOC).splitlines()]
    contract = next(
        c
        for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
        if c["name"].startswith("Layers:")
    )
    assert drawn == [layer.replace("mabeam.", "") for layer in contract["layers"]]


def _path_steps(text: str) -> list[tuple[str, set[str]]]:
    """The numbered steps of the path of a Vote: each step's name and the modules it cites."""
    steps = re.findall(r"^\d+\. \*\*([^*]+)\*\*(.*?)(?=^\d+\. \*\*|^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    return [(name, set(re.findall(r"`(mabeam/[\w/.]+)`", body))) for name, body in steps]


def test_the_readme_follows_a_vote_through_the_same_steps() -> None:
    readme, doc = _path_steps(README), _path_steps(DOC)
    assert [name for name, _ in readme] == [name for name, _ in doc]
    assert [name for name, _ in doc][:1] == ["SDK call"] and len(doc) >= 5
    for (name, short), (_, detailed) in zip(readme, doc, strict=True):
        # What the README cites in a step, the detailed step cites too (or a module inside it).
        missing = {p for p in short if not any(d == p or d.startswith(p) for d in detailed)}
        assert not missing, f"step {name!r}: the README cites {missing}, docs/architecture.md does not"


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
