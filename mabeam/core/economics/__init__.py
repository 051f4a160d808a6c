"""The economic mechanisms: auctions and markets, as pure state machines.

Nothing here imports kopf or a Kubernetes client, reads the clock or does I/O: the operator
(``mabeam.controller``) gathers the Bids or Orders, calls :mod:`.auction` or :mod:`.market`, and
carries out the effects (:class:`SetOwner`, ``SetVariable``, ``EmitEvent``).
"""

from . import auction, market, sealing
from ._common import AuctionStep, BidAnswer, EconomicEffect, MarketStep, OrderAnswer, SetOwner

__all__ = [
    "AuctionStep",
    "BidAnswer",
    "EconomicEffect",
    "MarketStep",
    "OrderAnswer",
    "SetOwner",
    "auction",
    "market",
    "sealing",
]
