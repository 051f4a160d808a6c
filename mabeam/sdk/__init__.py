"""The agent SDK: what an agent's program uses to join MABEAM and answer.

An agent declares callbacks and calls :meth:`AgentApp.run`::

    from mabeam.sdk import AgentApp

    app = AgentApp()

    @app.on_start
    async def hello(ctx):
        ctx.log.info("agent %s is up", ctx.name)

    app.run()

Identity comes from the Pod the operator made: ``MABEAM_AGENT`` and ``MABEAM_NAMESPACE`` name
the agent, and the credentials are the Pod's ServiceAccount (in a cluster) or ``KUBECONFIG``
(on the local control plane). The SDK never configures logging handlers; the program does.
"""

from ._app import AgentApp, Context
from ._sessions import Session, Task
from ._trading import AuctionView, MarketView
from ._variables import Variables, VariableValue

__all__ = [
    "AgentApp",
    "AuctionView",
    "Context",
    "MarketView",
    "Session",
    "Task",
    "VariableValue",
    "Variables",
]
