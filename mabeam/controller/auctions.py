"""Auction handlers: one session loop per Auction, driving :mod:`mabeam.core.economics.auction`.

The loop is the shared one (:mod:`._session`); Bids are the answers. An Awarded auction makes
each winner the owner of the items it won (``status.owner`` of the item's Variable), at most
once per auction even across operator restarts (see docs/economics.md). Sealed bids are opened
with the operator's key (docs/security.md, "Sealed bids").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import pydantic

from ..core.economics import BidAnswer, SetOwner, auction
from ..core.economics.settlement import auction_settlement, bid_exposure
from ..errors import InvalidSpecError
from ..kube.resources import AUCTION, BID, VARIABLE
from ..models.account import HOUSE_ACCOUNT, Settlement
from ..models.auction import SEALED_MECHANISMS, AuctionSpec, AuctionStatus, BidSpec, bid_name
from ._events import post
from ._money import PaidLoop
from ._sealing import sealing_key
from ._session import ParsedAnswer, SessionKind, register
from .variables import apply_session_owner


def parse_bid(session: str, bid: dict[str, Any], at: dt.datetime) -> ParsedAnswer:
    """A Bid as the engine's answer, or why it is refused before the engine sees it."""
    try:
        spec = BidSpec.model_validate(bid.get("spec") or {})
    except pydantic.ValidationError as exc:
        return ParsedAnswer(
            None, refusal=("Invalid", f"the Bid's spec is not valid: {exc.errors()[0]['msg']}")
        )
    if spec.auction != session:
        return ParsedAnswer(
            None, refusal=("WrongSession", f"spec.auction is {spec.auction!r}, the label says {session!r}")
        )
    return ParsedAnswer(spec.agent, BidAnswer.from_bid(spec, at))


class AuctionLoop(PaidLoop):
    """Carries out an auction's allocations: each sold item's Variable gets its new owner, and
    (payment Ledger) each winner pays the items' sellers (_money.py).

    A sealed auction's engine gets the operator's sealing key: its public half to publish when
    bidding opens, the private key and the Auction's uid to open the bids (see _sealing.py).
    """

    async def engine_options(self, body: dict[str, Any], spec: Any, *, starting: bool) -> dict[str, Any]:
        if spec.mechanism not in SEALED_MECHANISMS:
            return {}
        key = await sealing_key(self.memo)
        if starting:
            return {"sealing": key.info}
        return {"sealing_key": key, "session_uid": str(body["metadata"].get("uid") or "")}

    def exposure(
        self, spec: Any, status: Any, agent: str, answer: Any, options: Mapping[str, Any]
    ) -> Fraction | None:
        return bid_exposure(
            spec,
            status,
            agent,
            answer,
            sealing_key=options.get("sealing_key"),
            session_uid=str(options.get("session_uid", "")),
        )

    def beyond_means(self, spec: Any, answer: Any) -> Any | None:
        if spec.mechanism in SEALED_MECHANISMS:
            return None
        return dataclasses.replace(answer, accept=False)

    def counted(self, spec: Any, status: Any) -> set[str] | None:
        if spec.mechanism in SEALED_MECHANISMS:
            return {b.agent for b in status.bids}
        return None  # a clock: what a bidder accepted stays binding until the auction ends

    async def plan(
        self, sid: str, spec: Any, status: Any, holds: Mapping[str, int], goods_holds: Mapping[str, int]
    ) -> Settlement:
        """Each sold item's seller is its Variable's owner (an Agent with an Account), else the house."""
        sellers: dict[str, str] = {}
        if status.phase == "Awarded" and status.result is not None:
            for allocation in status.result.allocations:
                for item in allocation.items:
                    variable = await self.kube.get(VARIABLE, item, self.namespace)
                    owner = ((variable or {}).get("status") or {}).get("owner") or {}
                    name = owner.get("name") if owner.get("kind") == "Agent" else None
                    sellers[item] = name if name in self._ledgers else HOUSE_ACCOUNT
        return auction_settlement(sid, spec, status, sellers, holds)

    async def carry_out_paid_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        if not isinstance(effect, SetOwner):
            raise TypeError(f"an auction has no effect {type(effect).__name__}")
        session_id = f"{effect.session}:{body['metadata'].get('uid', '')}"
        try:
            if await apply_session_owner(
                self.kube, self.namespace, effect.variable, effect.agent, session_id
            ):
                post(
                    body,
                    type="Normal",
                    reason="Allocated",
                    message=f"{effect.variable} is now owned by {effect.agent}",
                )
        except InvalidSpecError as exc:
            post(body, type="Warning", reason="AllocationNotApplied", message=str(exc))
            return False
        return True


def _label(spec: AuctionSpec) -> str:
    return spec.mechanism


KIND = register(
    SessionKind(
        res=AUCTION,
        answer_res=BID,
        spec_model=AuctionSpec,
        status_model=AuctionStatus,
        terminal=auction.TERMINAL_PHASES,
        start=auction.start,
        step=auction.step,
        next_deadline=auction.next_deadline,
        outcome_effects=auction.outcome_effects,
        parse_answer=parse_bid,
        answer_name=bid_name,
        label=_label,
        loop=AuctionLoop,
        step_in_thread=True,
    )
)
