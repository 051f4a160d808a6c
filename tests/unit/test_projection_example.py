"""The plain-Pod example mounts the ConfigMap the operator really writes, as a valid Pod."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import yaml

from mabeam.core.variables import decode_projection, projection
from mabeam.core.variables_wire import PROJECTION_CONFIGMAP
from mabeam.models.variable import VariableStatus

EXAMPLE = Path(__file__).parents[2] / "examples" / "plain" / "reads-variables-as-files.yaml"


def test_plain_pod_example_is_a_valid_pod_mounting_the_projection() -> None:
    pod = yaml.safe_load(EXAMPLE.read_text())
    kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    assert volumes[mount["name"]]["configMap"]["name"] == PROJECTION_CONFIGMAP
    # The file the container reads is a key the projection writes: the Variable's name.
    data = projection([("target-temperature", VariableStatus.model_validate({"value": 21.5, "version": 3}))])
    assert json.loads(data["target-temperature"]) == 21.5
    assert decode_projection(data) == {"target-temperature": 21.5}
    assert f"{mount['mountPath']}/target-temperature" in " ".join(pod["spec"]["containers"][0]["command"])
