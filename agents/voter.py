"""An example agent: joins MABEAM, reports its capabilities and votes by its own preferences.

Run in a Pod made by the operator (``MABEAM_AGENT`` and ``MABEAM_NAMESPACE`` are set there).

How it votes: ``VOTER_PREFERENCES`` (in the Pod's env) ranks the options it likes, best first,
e.g. ``stable,beta``. It votes for the best-ranked option the session offers; if it likes none
of them it votes for the option nearest to its taste by ``VOTER_RISK`` (``low`` picks the first
listed option, the conservative default of whoever wrote the session; ``high`` the last). With no
preferences and no risk setting it abstains (no Vote).
"""

from __future__ import annotations

import logging
import os

from mabeam.sdk import AgentApp, Context, Session

app = AgentApp()


def choose(options: tuple[str, ...], preferences: list[str], risk: str) -> str | None:
    """The option this voter votes for (None: abstain)."""
    for liked in preferences:
        if liked in options:
            return liked
    if not options or risk not in ("low", "high"):
        return None
    return options[0] if risk == "low" else options[-1]


def preferences() -> list[str]:
    return [p.strip() for p in os.environ.get("VOTER_PREFERENCES", "").split(",") if p.strip()]


@app.on_start
def hello(ctx: Context) -> None:
    caps = ", ".join(ctx.spec.get("capabilities", [])) or "none"
    ctx.log.info("agent %s/%s started; capabilities: %s", ctx.namespace, ctx.name, caps)


@app.on_vote
def vote(session: Session) -> str | None:
    choice = choose(session.options, preferences(), os.environ.get("VOTER_RISK", ""))
    logging.getLogger("voter").info("session %s: voting %s of %s", session.name, choice, session.options)
    return choice


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run()
