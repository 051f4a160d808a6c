"""The pure cores: (spec, status, answers, now) -> (new status, effects).

Nothing in this package imports kopf, a Kubernetes client or an HTTP stack, reads the clock or
does I/O (an import-linter contract in ``pyproject.toml`` enforces it). The shell around it,
``mabeam.controller`` and ``mabeam.sdk``, gathers the inputs and carries out the effects.

- ``agents``: the Agent lifecycle: (agent, its pods, now) -> (status, actions).
- ``variables``: a Variable's type, constraints, writes, locks, history and projection.
- ``variables_wire``: the wire forms the Variable operator and the SDK agree on.
- ``selectors``: Kubernetes label selectors.
- ``anomaly``: anomaly detection on ended sessions against per-protocol baselines.
- ``protocols``: the coordination protocols and their engine.
- ``economics``: auctions and markets, their engines and clearing algorithms.
"""
