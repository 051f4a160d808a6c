"""The Kubernetes layer: what MABEAM needs to talk to an API server, above the models and cores.

- ``client``: a thin async client over lightkube that speaks plain dicts and translates errors.
- ``resources``: the API resources MABEAM reads and writes (``Res``).
- ``crdgen``: the CustomResourceDefinitions generated from the models.
- ``schema``: validation of objects against a CRD's schema, as the API server does it.
- ``permissions``: the RBAC rules of the operator and the agents (the chart must match them).

It imports the models and ``mabeam.errors``, never the controller, the SDK, the CLI or ``local``.
"""
