"""The local kubelet: runs the Pods of ``mabeam local`` as processes on this machine.

It talks to the API server over HTTP only, as a real kubelet does: it lists and watches
all Pods, binds the unbound ones to its node (the ``pods/binding`` subresource), starts
each container as a local process, and reports what happened through the ``status``
subresource. What it does, and what it leaves out on purpose:

- The image is ignored. A container runs its ``command`` + ``args`` as a process on this
  machine, in its own process group, with ``env`` and ``workingDir``. A leading ``python``
  or ``python3`` is replaced by the kubelet's interpreter (``python=``), so that agent
  programs run in the same virtualenv. A container without a command, or whose executable
  is not found here, waits with reason ``CommandNotFound``; the pod stays ``Pending``.
- ``env``: plain values (with ``$(VAR)`` expansion) and ``valueFrom.fieldRef`` for
  metadata.name, metadata.namespace, metadata.uid, spec.nodeName,
  spec.serviceAccountName, status.podIP, status.hostIP. Anything else (secretKeyRef,
  configMapKeyRef, resourceFieldRef, envFrom) makes the container wait with reason
  ``CreateContainerConfigError`` and a message that names the field.
- Every process also gets ``KUBECONFIG``: a kubeconfig for the local API, written per pod,
  whose bearer token ``sa:<namespace>:<serviceAccountName>`` tells the API server who speaks.
  ``HOSTNAME`` is the pod name. Output goes to ``<workdir>/<namespace>_<pod>_<container>.log``.
- Readiness: ready once running, or, with a ``readinessProbe`` (``exec`` or ``httpGet`` on
  127.0.0.1), after the probe passes. Liveness and startup probes, init containers,
  lifecycle hooks and resource limits are not supported (init containers are reported as such).
- ``restartPolicy`` Always / OnFailure / Never, with the crash back-off of Kubernetes
  (10 s doubling up to 5 min; both configurable) and ``CrashLoopBackOff`` between restarts.
- Deletion: SIGTERM to each process group, SIGKILL after the grace period; then, if the
  object still exists with a ``deletionTimestamp`` and has no finalizers, the kubelet deletes
  it with grace period 0, as the real kubelet does.
- ``evict()`` simulates a node-pressure eviction; ``stop()`` ends every process.

Against a real API server (``mabeam cluster``) it behaves as a real kubelet does where MABEAM
relies on it: it speaks TLS with the CA and client certificate of its kubeconfig, registers its
``Node`` (``register_node=True``), binds pods with the ``pods/binding`` subresource as it
does locally (there is no scheduler), and hands every pod a ServiceAccount token obtained with
the TokenRequest API, bound to the pod, in the pod's kubeconfig next to the cluster's CA (on
``mabeam local`` too). ``images`` maps an image (its repository, without tag or digest) to its
entrypoint, for containers that give only ``args``, as the operator's Deployment does. Every
process dies with the kubelet (``PR_SET_PDEATHSIG`` on Linux), so a killed kubelet leaves no pod
behind.

By concern: the kubelet's watch of pods and its reports (``_kubelet``), the pod runtime:
processes, logs, restarts and stops (``_runtime``, over the process groups of ``_process``), the
readiness probes (``_probes``), what it knows of a pod and the status it reports (``_pods``), its
credentials and API access and the pods' own credentials (``_api``), and the node: registration
and binding (``_node``).
"""

from ._kubelet import LocalKubelet
from ._pods import pod_phase
from ._process import die_with_parent

__all__ = ["LocalKubelet", "die_with_parent", "pod_phase"]
