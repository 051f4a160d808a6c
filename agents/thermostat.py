"""An example agent that reads one Variable and writes another.

It follows ``target-temperature`` (a number that users or other agents set) through the SDK's
cache, and claims ``heater-owner`` under the Variable's lock: the first thermostat to start
becomes the owner; the others see the owner and leave it alone. See examples/variables.yaml.
"""

from __future__ import annotations

import asyncio
import logging

from mabeam.errors import ConflictError
from mabeam.sdk import AgentApp, Context

app = AgentApp()
_background: set[asyncio.Task[None]] = set()


@app.on_start
async def claim_the_heater(ctx: Context) -> None:
    async with ctx.variables.lock("heater-owner", ttl=10) as token:
        owner, version = await ctx.variables.read("heater-owner")
        if owner:
            ctx.log.info("the heater belongs to %s already (version %s)", owner, version)
        else:
            try:
                version = await ctx.variables.write(
                    "heater-owner", ctx.name, based_on=version, reason="the first thermostat up"
                )
                ctx.log.info(
                    "%s owns the heater now (version %s, fencing token %s)", ctx.name, version, token
                )
            except ConflictError as exc:
                ctx.log.info("someone else claimed the heater first: %s", exc.current_value)
    task = asyncio.create_task(follow_the_target(ctx))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def follow_the_target(ctx: Context) -> None:
    async for target, version in ctx.variables.watch("target-temperature"):
        owner = await ctx.variables.get("heater-owner")
        role = "driving the heater" if owner == ctx.name else "watching"
        ctx.log.info("target temperature %s (version %s); %s is %s", target, version, ctx.name, role)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run()
