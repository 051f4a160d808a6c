"""Market handlers: one session loop per Market, driving :mod:`mabeam.core.economics.market`.

The loop is the shared one (:mod:`._session`); Orders are the answers. A cleared market's price
goes into ``spec.priceVariableRef`` (at most once per market, see docs/economics.md). Orders are
sealed to the operator's key, as Bids are (docs/security.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import pydantic

from ..core import protocols
from ..core.economics import OrderAnswer, market
from ..core.economics.settlement import market_settlement, order_exposure, order_supply
from ..kube.resources import MARKET, ORDER
from ..models.account import Settlement
from ..models.market import MarketSpec, MarketStatus, OrderSpec, order_name
from ._money import PaidLoop
from ._sealing import sealing_key
from ._session import ParsedAnswer, SessionKind, register
from .coordination import set_variable


def parse_order(session: str, order: dict[str, Any], at: dt.datetime) -> ParsedAnswer:
    """An Order as the engine's answer, or why it is refused before the engine sees it."""
    try:
        spec = OrderSpec.model_validate(order.get("spec") or {})
    except pydantic.ValidationError as exc:
        return ParsedAnswer(
            None, refusal=("Invalid", f"the Order's spec is not valid: {exc.errors()[0]['msg']}")
        )
    if spec.market != session:
        return ParsedAnswer(
            None, refusal=("WrongSession", f"spec.market is {spec.market!r}, the label says {session!r}")
        )
    return ParsedAnswer(spec.agent, OrderAnswer.from_order(spec, at))


class MarketLoop(PaidLoop):
    """Carries out a market's outcome: the clearing price into its Variable, and (payment
    Ledger) the trades' payments and the good's deliveries through the house (_money.py); a
    seller must hold what it sells (``spec.good`` on its Account).

    The engine gets the operator's sealing key: its public half to publish when collection
    opens, the private key and the Market's uid to open the orders (see _sealing.py).
    """

    async def engine_options(self, body: dict[str, Any], spec: Any, *, starting: bool) -> dict[str, Any]:
        key = await sealing_key(self.memo)
        if starting:
            return {"sealing": key.info}
        return {"sealing_key": key, "session_uid": str(body["metadata"].get("uid") or "")}

    def exposure(
        self, spec: Any, status: Any, agent: str, answer: Any, options: Mapping[str, Any]
    ) -> Fraction | None:
        return order_exposure(
            spec,
            status,
            agent,
            answer,
            sealing_key=options.get("sealing_key"),
            session_uid=str(options.get("session_uid", "")),
        )

    def good(self, spec: Any) -> str | None:
        # A Fisher market's goods are the house's supply: nobody sells them from an Account.
        return None if spec.mechanism == "fisher" else str(spec.good)

    def supply(
        self, spec: Any, status: Any, agent: str, answer: Any, options: Mapping[str, Any]
    ) -> int | None:
        return order_supply(
            spec,
            status,
            agent,
            answer,
            sealing_key=options.get("sealing_key"),
            session_uid=str(options.get("session_uid", "")),
        )

    def counted(self, spec: Any, status: Any) -> set[str] | None:
        return {o.agent for o in status.orders}

    async def plan(
        self, sid: str, spec: Any, status: Any, holds: Mapping[str, int], goods_holds: Mapping[str, int]
    ) -> Settlement:
        return market_settlement(sid, spec, status, holds, goods_holds)

    async def carry_out_paid_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        if not isinstance(effect, protocols.SetVariable):
            raise TypeError(f"a market has no effect {type(effect).__name__}")
        return await set_variable(self, body, effect)


def _label(spec: MarketSpec) -> str:
    return spec.mechanism


KIND = register(
    SessionKind(
        res=MARKET,
        answer_res=ORDER,
        spec_model=MarketSpec,
        status_model=MarketStatus,
        terminal=market.TERMINAL_PHASES,
        start=market.start,
        step=market.step,
        next_deadline=market.next_deadline,
        outcome_effects=market.outcome_effects,
        parse_answer=parse_order,
        answer_name=order_name,
        label=_label,
        loop=MarketLoop,
        step_in_thread=True,  # a Fisher market's equilibrium takes up to about a second
    )
)
