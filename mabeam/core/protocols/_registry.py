"""Which protocols exist: the built-in ones and those installed under ``mabeam.protocols``.

A third-party distribution adds a protocol with an entry point::

    [project.entry-points."mabeam.protocols"]
    coin-free = "my_package.protocols:MyProtocol"

The entry point's name is the protocol's name in ``spec.protocol``; its object is a
:class:`~mabeam.core.protocols.Protocol` subclass (instantiated without arguments) or instance.
Built-in names cannot be replaced. An entry point that fails to load, or does not give a
Protocol, is skipped and listed in :attr:`Registry.problems` (and logged), so that one broken
plug-in does not stop the operator.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Mapping

from ...errors import InvalidSpecError
from ._base import Protocol
from ._contract_net import ContractNet
from ._priority import Priority
from ._voting import Consensus, Majority, Weighted

__all__ = ["ENTRY_POINT_GROUP", "Registry", "builtin_protocols", "default_registry", "discover"]

ENTRY_POINT_GROUP = "mabeam.protocols"
logger = logging.getLogger(__name__)


def builtin_protocols() -> dict[str, Protocol]:
    protocols: list[Protocol] = [Consensus(), Majority(), Weighted(), ContractNet(), Priority()]
    return {p.name: p for p in protocols}


class Registry:
    """Protocols by name."""

    def __init__(self, protocols: Mapping[str, Protocol], problems: tuple[str, ...] = ()) -> None:
        self._protocols = dict(protocols)
        self.problems = problems

    def names(self) -> list[str]:
        return sorted(self._protocols)

    def get(self, name: str) -> Protocol:
        """The protocol called ``name``; InvalidSpecError (spec.protocol) if there is none."""
        try:
            return self._protocols[name]
        except KeyError:
            raise InvalidSpecError(
                f"unknown protocol {name!r}; available: {', '.join(self.names())}", path="spec.protocol"
            ) from None


def _load(entry_point: importlib.metadata.EntryPoint) -> Protocol:
    obj = entry_point.load()
    if isinstance(obj, type) and issubclass(obj, Protocol):
        obj = obj()
    if not isinstance(obj, Protocol):
        raise TypeError(f"{entry_point.value} is {type(obj).__name__}, not a mabeam Protocol")
    return obj


def discover() -> Registry:
    """The built-in protocols plus every loadable entry point of the ``mabeam.protocols`` group."""
    protocols = builtin_protocols()
    problems: list[str] = []
    for entry_point in sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value)
    ):
        if entry_point.name in protocols:
            problems.append(f"{entry_point.name}: the name is taken; {entry_point.value} is ignored")
            continue
        try:
            protocols[entry_point.name] = _load(entry_point)
        except Exception as exc:  # a broken plug-in must not stop the operator
            problems.append(f"{entry_point.name}: {entry_point.value} could not be loaded: {exc}")
    for problem in problems:
        logger.warning("protocol entry point skipped: %s", problem)
    return Registry(protocols, tuple(problems))


@functools.cache
def default_registry() -> Registry:
    """The registry discovered once per process."""
    return discover()
