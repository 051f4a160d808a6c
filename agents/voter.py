"""An example agent: joins MABEAM and reports its capabilities.

Run in a Pod made by the operator (``MABEAM_AGENT`` and ``MABEAM_NAMESPACE`` are set there).
"""

from __future__ import annotations

import logging

from mabeam.sdk import AgentApp, Context

app = AgentApp()


@app.on_start
def hello(ctx: Context) -> None:
    caps = ", ".join(ctx.spec.get("capabilities", [])) or "none"
    ctx.log.info("agent %s/%s started; capabilities: %s", ctx.namespace, ctx.name, caps)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run()
