"""Which Agent changes wake which Variable loops (controller/variables.py)."""

from __future__ import annotations

from mabeam.controller.variables import _may_concern


def test_an_agent_concerns_the_variables_that_name_or_select_it() -> None:
    assert _may_concern({"agents": ["a1"]}, "a1")
    assert not _may_concern({"agents": ["a2"]}, "a1")
    assert _may_concern({"agents": [], "selector": {}}, "a1")  # {} selects every agent
    assert _may_concern({"selector": {"matchLabels": {"team": "x"}}}, "a1")  # labels decide
    assert not _may_concern(None, "a1")  # no access: nobody may write
    assert not _may_concern({}, "a1")
    # Not what the schema allows: woken, the pass decides.
    assert _may_concern({"agents": "a1"}, "a9")
    assert _may_concern(["a1"], "a9")
