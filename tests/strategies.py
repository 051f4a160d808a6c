"""Hypothesis strategies for the coordination protocols (one module, as attrs does it).

Scenarios are small on purpose (a handful of agents, a few options) so that the tests can compare
the engine with brute force over every way the open participants could still answer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from hypothesis import strategies as st

from mabeam.core.protocols import Participant
from mabeam.models.coordination import CoordinationSpec

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ANSWER_SECONDS = 60.0
DEADLINE = T0 + dt.timedelta(seconds=ANSWER_SECONDS)
AGENT_POOL = ("ada", "bob", "cy", "dee", "eve", "fay")
OPTION_POOL = ("red", "green", "blue")
OUTSIDERS = ("mallory", "oscar")
WEIGHTS = (0.5, 1.0, 1.0, 1.5, 2.0, 3.0, 0.1)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@dataclass
class Voter:
    """A participant in a generated scenario and how it behaves."""

    participant: Participant
    alive: bool
    answer: str | None  # the option it votes for (None: silent)
    second: float  # when its answer arrives, in seconds after T0


@dataclass
class VoteScenario:
    spec: CoordinationSpec
    voters: list[Voter]
    outsiders: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def participants(self) -> list[Participant]:
        return [v.participant for v in self.voters]

    @property
    def alive(self) -> dict[str, bool]:
        return {v.participant.name: v.alive for v in self.voters}


names = st.lists(st.sampled_from(AGENT_POOL), min_size=1, max_size=5, unique=True)
small_names = st.lists(st.sampled_from(AGENT_POOL), min_size=1, max_size=4, unique=True)
options = st.lists(st.sampled_from(OPTION_POOL), min_size=1, max_size=3, unique=True)
quorums = st.one_of(
    st.none(),
    st.integers(min_value=1, max_value=5),
    st.sampled_from(["0%", "33%", "50%", "66.67%", "100%"]),
)
thresholds = st.sampled_from([0.0, 0.25, 0.5, 0.6, 2 / 3, 1.0])


@st.composite
def voting_specs(draw: st.DrawFn, protocol: str | None = None) -> dict[str, object]:
    """The rule part of a consensus/majority/weighted spec (participants and options added later)."""
    return {
        "protocol": protocol or draw(st.sampled_from(["consensus", "majority", "weighted"])),
        "quorum": draw(quorums),
        "threshold": draw(thresholds),
        "thresholdComparison": draw(st.sampled_from(["GreaterThan", "AtLeast"])),
        "tiePolicy": draw(st.sampled_from(["NoDecision", "FirstListed"])),
        "absentPolicy": draw(st.sampled_from(["exclude", "abstain"])),
        "answerSeconds": ANSWER_SECONDS,
        "variableRef": {"name": "outcome"},
    }


@st.composite
def vote_scenarios(
    draw: st.DrawFn,
    protocol: str | None = None,
    *,
    small: bool = False,
    on_time: bool = True,
    invalid: bool = False,
) -> VoteScenario:
    """Participants with weights, readiness, a final vote each (or silence) and arrival times.

    ``on_time``: every answer arrives before the deadline. ``invalid``: some answers name an
    unknown option, and outsiders answer too.
    """
    rules = draw(voting_specs(protocol))
    agent_names = draw(small_names if small else names)
    opts = draw(options)
    choices = [*opts, "bogus"] if invalid else list(opts)
    latest = ANSWER_SECONDS - 1 if on_time else ANSWER_SECONDS + 10
    voters = [
        Voter(
            participant=Participant(name=name, weight=draw(st.sampled_from(WEIGHTS))),
            alive=draw(st.booleans() | st.just(True)),
            answer=draw(st.none() | st.sampled_from(choices)),
            second=draw(st.integers(min_value=1, max_value=int(latest))),
        )
        for name in agent_names
    ]
    outsiders: dict[str, tuple[str, float]] = {}
    if invalid:
        for name in draw(st.lists(st.sampled_from(OUTSIDERS), max_size=2, unique=True)):
            outsiders[name] = (draw(st.sampled_from(opts)), float(draw(st.integers(1, int(latest)))))
    spec = CoordinationSpec.model_validate(
        {**rules, "participants": {"agents": agent_names}, "options": opts}
    )
    return VoteScenario(spec=spec, voters=voters, outsiders=outsiders)


@dataclass
class Bidder:
    participant: Participant
    alive: bool
    cost: float | None  # its proposal (None: it does not bid)
    second: float  # when its proposal arrives
    behaviour: str  # what it does when awarded: accept, decline or silent


@st.composite
def bidders(draw: st.DrawFn) -> list[Bidder]:
    """Agents, some with the capability 'weld', with costs that often tie."""
    out = []
    for name in draw(names):
        capable = draw(st.booleans() | st.just(True))
        out.append(
            Bidder(
                participant=Participant(
                    name=name, capabilities=frozenset({"weld"} if capable else {"paint"})
                ),
                alive=draw(st.booleans() | st.just(True)),
                cost=draw(st.none() | st.sampled_from([1.0, 2.0, 2.0, 3.5, 0.0])),
                second=draw(st.integers(min_value=1, max_value=59)),
                behaviour=draw(st.sampled_from(["accept", "decline", "silent"])),
            )
        )
    return out


@dataclass
class Claimant:
    participant: Participant
    alive: bool
    claim: bool | None  # None: silent
    second: float


@st.composite
def claimants(draw: st.DrawFn, *, small: bool = False) -> list[Claimant]:
    """Agents with priorities that often tie and claim times that often tie."""
    return [
        Claimant(
            participant=Participant(name=name, priority=draw(st.integers(min_value=-1, max_value=1))),
            alive=draw(st.booleans() | st.just(True)),
            claim=draw(st.none() | st.booleans()),
            second=draw(st.integers(min_value=1, max_value=5)),
        )
        for name in draw(small_names if small else names)
    ]
