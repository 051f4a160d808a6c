"""Money in a session loop: escrow while an auction or market is open, settlement when it ends.

A session pays from Accounts when its ``status.payment`` is ``Ledger`` (decided when it starts:
``spec.payment``, where ``Auto`` means "if the namespace has an Account"). Then, in every pass:

1. **Admission** (:meth:`PaidLoop.admit`): each answer's exposure (the most it can make its agent
   pay, :mod:`mabeam.core.economics.settlement`) must fit the agent's free balance plus what this
   session already holds for it; otherwise the answer is refused (``NoAccount``,
   ``OverBudget``, with the balance) before the engine sees it. A market's seller must own what
   it sells: each sell order's supply (:func:`order_supply`) must fit the seller's free holding
   of the market's good plus what this session already holds of it (``NotHeld``, with the
   holding), and its quantities must be whole thousandths (``QuantityTooFine``).
2. **Escrow** (:meth:`PaidLoop.after_step`): each counted answer's exposure (and a seller's
   supply) is held on its Account *before* the session's status is written, one
   compare-and-swap per Account for both; a race lost to another session's hold makes the pass
   start again, and the answer is then refused.
3. **Settlement**: the pass that ends the session computes the transfers and their checks, and
   writes them into ``status.settlement`` together with the ending; that record is the commit.
   Then each Account is settled with one compare-and-swap that releases the session's holds,
   posts its lines (money and goods) and records the session in ``status.settled``, so a retry
   after a crash at any point finishes the same settlement and never pays (or delivers) twice.
   The ownership of sold items follows, then ``status.outcomeApplied``. A settlement whose
   checks fail moves nothing: the session ends ``Failed`` (reason ``SettlementRejected``) with
   the report, and escrow is released.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pydantic

from ..core import ledger as _ledger
from ..core.economics.settlement import QuantityError, goods_postings, hold_amount, postings, session_id
from ..core.protocols import EmitEvent, Verdict
from ..errors import ConflictError
from ..kube.resources import ACCOUNT
from ..models._base import ending_conditions
from ..models.account import HOUSE_ACCOUNT, Settlement, format_money, format_quantity
from ._events import post
from ._runtime import clock
from ._session import SessionLoop
from .accounts import account_ledger, change_account, ensure_house

__all__ = ["PaidLoop", "Settle"]

#: Refusals the admission gives: kept for the answer's version, as every verdict is.
MONEY_REFUSALS = frozenset({"NoAccount", "OverBudget", "NotHeld", "QuantityTooFine"})


@dataclass(frozen=True)
class Settle:
    """Carry out a session's settlement on its Accounts (at most once per Account)."""

    settlement: Settlement


class PaidLoop(SessionLoop):
    """A session loop whose outcomes are paid from Accounts (auctions and markets)."""

    _ledgers: dict[str, _ledger.Ledger]
    _exposures: dict[str, int]
    _supplies: dict[str, int]

    # --- what each kind says -------------------------------------------------------------------

    @abc.abstractmethod
    def exposure(
        self, spec: Any, status: Any, agent: str, answer: Any, options: Mapping[str, Any]
    ) -> Fraction | None:
        """The most ``answer`` can make ``agent`` pay (None: nothing)."""

    @abc.abstractmethod
    def counted(self, spec: Any, status: Any) -> set[str] | None:
        """The agents whose counted answers hold escrow now; None for a clock auction, whose
        holds only rise until it ends (an earlier round's acceptance stays binding)."""

    def good(self, spec: Any) -> str | None:
        """The good its sellers deliver, held in escrow on their Accounts (None: no sellers)."""
        return None

    def supply(
        self, spec: Any, status: Any, agent: str, answer: Any, options: Mapping[str, Any]
    ) -> int | None:
        """The most ``answer`` can make ``agent`` deliver of :meth:`good`, in thousandths (None:
        nothing). QuantityError if its quantities are finer than the goods are counted."""
        return None

    def beyond_means(self, spec: Any, answer: Any) -> Any | None:
        """What the engine sees of an answer refused as OverBudget (None: nothing, as if it had
        not been sent). A clock auction sees a decline: the bidder cannot stay in at that price,
        and the round need not wait for its deadline."""
        return None

    @abc.abstractmethod
    async def plan(
        self, sid: str, spec: Any, status: Any, holds: Mapping[str, int], goods_holds: Mapping[str, int]
    ) -> Settlement:
        """The settlement of the ended session (its checks included); ``goods_holds``: what escrow
        holds of :meth:`good` per Account."""

    # --- the hooks of the session loop ---------------------------------------------------------

    def sid(self, body: dict[str, Any]) -> str:
        return session_id(self.kind.res.kind, self.name, str(body["metadata"].get("uid") or ""))

    async def on_start(self, body: dict[str, Any], spec: Any, result: Any) -> Any:
        mode = spec.payment
        if mode == "Auto":
            mode = "Ledger" if await self.kube.list(ACCOUNT, self.namespace) else "None"
        return dataclasses.replace(result, status=result.status.model_copy(update={"payment": mode}))

    async def admit(
        self,
        body: dict[str, Any],
        spec: Any,
        status: Any,
        answers: dict[str, Any],
        refused: dict[str, tuple[str, str]],
        objs: list[dict[str, Any]],
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        self._ledgers, self._exposures, self._supplies = {}, {}, {}
        if status.payment != "Ledger" or status.phase in self.kind.terminal:
            return answers
        for obj in await self.kube.list(ACCOUNT, self.namespace):
            try:
                self._ledgers[obj["metadata"]["name"]] = account_ledger(obj)
            except pydantic.ValidationError:
                continue  # reported on the Account; its agent cannot commit money meanwhile
        sid = self.sid(body)
        by_name = {o["metadata"]["name"]: o for o in objs}
        admitted: dict[str, Any] = {}
        for agent, answer in answers.items():
            oname = self.kind.answer_name(self.name, agent)
            obj = by_name.get(oname, {})
            verdict = obj.get("status") or {}
            if verdict.get("reason") in MONEY_REFUSALS and verdict.get("observedGeneration") == obj.get(
                "metadata", {}
            ).get("generation"):
                # This version was refused for money: it stays refused (write a new version).
                refused[oname] = (str(verdict["reason"]), str(verdict.get("message", "")))
                instead = self.beyond_means(spec, answer) if verdict["reason"] == "OverBudget" else None
                if instead is not None:
                    admitted[agent] = instead
                continue
            account = self._ledgers.get(agent)
            if account is None:
                # Every trader needs an Account here: a buyer to pay, a seller to be paid.
                refused[oname] = (
                    "NoAccount",
                    f"{agent} has no Account in namespace {self.namespace}, and this "
                    f"{self.kind.res.kind} is paid from Accounts: an administrator creates the "
                    f"Account {agent} with a budget (docs/economics.md)",
                )
                continue
            exposure = self.exposure(spec, status, agent, answer, options)
            need = hold_amount(exposure) if exposure is not None and exposure > 0 else 0
            free = account.free_for(sid)
            if need > free:
                elsewhere = account.escrow - account.holds.get(sid, 0)
                instead = self.beyond_means(spec, answer)
                if instead is not None:
                    admitted[agent] = instead
                refused[oname] = (
                    "OverBudget",
                    f"{agent}'s free balance is {format_money(free)} (balance "
                    f"{format_money(account.balance)}, {format_money(elsewhere)} held by other "
                    f"sessions): not enough for this {self.kind.answer_res.kind}; answer within it",
                )
                continue
            refusal = self._goods_refusal(spec, status, agent, answer, options, account, sid)
            if refusal is not None:
                refused[oname] = refusal
                continue
            if need:
                self._exposures[agent] = need
            admitted[agent] = answer
        return admitted

    def _goods_refusal(
        self,
        spec: Any,
        status: Any,
        agent: str,
        answer: Any,
        options: Mapping[str, Any],
        account: _ledger.Ledger,
        sid: str,
    ) -> tuple[str, str] | None:
        """Why a seller's answer cannot be counted (it does not hold what it sells), or None; a
        supply that fits is recorded for the escrow."""
        good = self.good(spec)
        if good is None:
            return None
        try:
            supply = self.supply(spec, status, agent, answer, options)
        except QuantityError as exc:
            return (
                "QuantityTooFine",
                f"{exc}; goods are counted in thousandths of a unit: write quantities with at most "
                "three decimals",
            )
        if not supply:
            return None
        stock = account.stock(good)
        free = stock.free_for(sid)
        if supply > free:
            elsewhere = stock.escrow - stock.holds.get(sid, 0)
            return (
                "NotHeld",
                f"{agent} holds {format_quantity(free)} of {good} free to sell (held "
                f"{format_quantity(stock.held)}, {format_quantity(elsewhere)} in escrow for other "
                f"sessions): a seller must own what it sells; sell within it (an administrator "
                f"grants goods in the Account's spec.goods)",
            )
        self._supplies[agent] = supply
        return None

    def _desired_holds(
        self, spec: Any, status: Any, verdicts: tuple[Verdict, ...], sid: str
    ) -> dict[str, int]:
        current = {name: ledger.holds.get(sid, 0) for name, ledger in self._ledgers.items()}
        accepted = {v.agent for v in verdicts if v.accepted}
        counted = self.counted(spec, status)
        if counted is None:
            out = dict(current)
            for agent in accepted & self._exposures.keys():
                out[agent] = max(out.get(agent, 0), self._exposures[agent])
            return out
        out = {agent: 0 for agent in current}
        for agent in counted:
            if agent in accepted and agent in self._exposures:
                out[agent] = self._exposures[agent]
            else:
                out[agent] = current.get(agent, 0)
        return out

    def _desired_goods(
        self, spec: Any, status: Any, verdicts: tuple[Verdict, ...], sid: str, good: str
    ) -> dict[str, int]:
        """What escrow should hold of ``good`` per seller: the supply of each counted order
        accepted in this pass, what it held before for the others counted, nothing otherwise."""
        current = {name: ledger.stock(good).holds.get(sid, 0) for name, ledger in self._ledgers.items()}
        accepted = {v.agent for v in verdicts if v.accepted}
        counted = self.counted(spec, status) or set()
        out = dict.fromkeys(current, 0)
        for agent in counted:
            out[agent] = self._supplies.get(agent, 0) if agent in accepted else current.get(agent, 0)
        return out

    async def _apply_holds(
        self, sid: str, desired: Mapping[str, int], good: str | None, goods: Mapping[str, int]
    ) -> None:
        for agent in sorted(desired.keys() | goods.keys()):
            ledger = self._ledgers.get(agent)
            if ledger is None:
                continue
            amount = desired.get(agent, ledger.holds.get(sid, 0))
            quantity = goods.get(agent, 0)
            if ledger.holds.get(sid, 0) == amount and (
                good is None or ledger.stock(good).holds.get(sid, 0) == quantity
            ):
                continue

            def hold(
                current: _ledger.Ledger, obj: dict[str, Any], amount: int = amount, quantity: int = quantity
            ) -> _ledger.Ledger:
                new = _ledger.hold(current, sid, amount)
                return new if good is None else _ledger.hold_goods(new, sid, good, quantity)

            try:
                changed = await change_account(self.kube, self.namespace, agent, hold)
            except _ledger.LedgerError as exc:
                # Another session took the money since this pass read the Account: start again,
                # and the admission refuses the answer with the balance as it is now.
                raise ConflictError(f"escrow for {agent} in {sid}: {exc}") from exc
            if changed is None:
                if amount or quantity:
                    raise ConflictError(f"Account {self.namespace}/{agent} is gone; reading again")
                continue
            self._ledgers[agent] = changed[0]

    async def after_step(self, body: dict[str, Any], spec: Any, before: Any, result: Any) -> Any:
        status = result.status
        if status.payment != "Ledger" or before.phase in self.kind.terminal:
            return result
        sid = self.sid(body)
        good = self.good(spec)
        goods = {} if good is None else self._desired_goods(spec, status, result.verdicts, sid, good)
        await self._apply_holds(sid, self._desired_holds(spec, status, result.verdicts, sid), good, goods)
        if status.phase not in self.kind.terminal:
            return result
        holds = {name: ledger.holds[sid] for name, ledger in self._ledgers.items() if ledger.holds.get(sid)}
        goods_holds = (
            {}
            if good is None
            else {
                name: ledger.stock(good).holds[sid]
                for name, ledger in self._ledgers.items()
                if ledger.stock(good).holds.get(sid)
            }
        )
        settlement = await self.plan(sid, spec, status, holds, goods_holds)
        if settlement.valid:
            status = status.model_copy(update={"settlement": settlement})
            effects = (Settle(settlement), *result.effects)
        else:
            failed = [c for c in settlement.checks if not c.passed]
            message = "the outcome failed its checks and nothing was applied: " + "; ".join(
                f"{c.name}: {c.message}" for c in failed
            )
            now = clock()
            conditions = ending_conditions(
                [c for c in status.conditions if c.type != "Complete"],
                failed=True,
                reason="SettlementRejected",
                message=message,
                now=now,
            )
            outcome = status.result.model_copy(update={"reason": "SettlementRejected", "message": message})
            status = status.model_copy(
                update={
                    "phase": "Failed",
                    "result": outcome,
                    "conditions": conditions,
                    "settlement": settlement,
                }
            )
            effects = (Settle(settlement), EmitEvent("SettlementRejected", message, "Warning"))
        return dataclasses.replace(result, status=status, effects=effects)

    def outcome_effects(self, spec: Any, status: Any) -> tuple[Any, ...]:
        effects = super().outcome_effects(spec, status)
        if status.settlement is not None:
            if not status.settlement.valid:
                return (Settle(status.settlement),)
            return (Settle(status.settlement), *effects)
        return effects

    async def carry_out_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        if isinstance(effect, Settle):
            await self.settle(body, spec, effect.settlement)
            return True
        return await self.carry_out_paid_effect(body, spec, effect)

    @abc.abstractmethod
    async def carry_out_paid_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        """Carry out one of the kind's own effects (ownership, a price)."""

    async def settle(self, body: dict[str, Any], spec: Any, settlement: Settlement) -> None:
        """Settle on every Account of ``settlement``, each at most once (see the module docstring)."""
        sid = settlement.session
        lines = postings(settlement)
        goods = goods_postings(settlement)
        if HOUSE_ACCOUNT in lines:
            await ensure_house(self.kube, self.namespace)
        now = clock()
        applied: list[str] = []
        for name in sorted(lines):

            def apply(
                current: _ledger.Ledger, obj: dict[str, Any], name: str = name
            ) -> _ledger.Ledger | None:
                new = _ledger.settle(current, sid, lines[name], now, goods.get(name, ()))
                if new is not None:
                    applied.append(name)
                return new

            changed = await change_account(self.kube, self.namespace, name, apply)
            if changed is None and (lines[name] or goods.get(name)):
                post(
                    body,
                    type="Warning",
                    reason="AccountMissing",
                    message=f"Account {name} was deleted before {sid} settled on it: "
                    "its lines were not posted",
                )
        label = self.kind.label(spec)
        for transfer in settlement.transfers:
            if transfer.payer in applied:
                self.memo.metrics.count_payment(self.namespace, label, transfer.amount)
                post(
                    body,
                    type="Normal",
                    reason="Paid",
                    message=f"{transfer.payer} paid {format_money(transfer.amount)} to {transfer.payee} "
                    f"({transfer.reason})",
                )
        for delivery in settlement.goods:
            if delivery.sender in applied:
                post(
                    body,
                    type="Normal",
                    reason="Delivered",
                    message=f"{delivery.sender} delivered {format_quantity(delivery.quantity)} of "
                    f"{delivery.good} to {delivery.receiver}",
                )
