# syntax=docker/dockerfile:1
# The MABEAM operator image: `docker build -t ghcr.io/mabeam/operator:0.1.0 .`
#
# Two stages: the builder builds wheels for mabeam and its pinned dependencies and installs
# them into a virtualenv at /opt/venv; the final stage copies only that virtualenv onto a clean
# base (no compiler, no pip cache, no sources). The final image runs as a numeric non-root
# user and writes nothing outside /tmp, so it runs with readOnlyRootFilesystem (the Helm chart
# mounts /tmp as an emptyDir). To pin the base by digest:
# `--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first: this layer is reused until the pins change.
COPY requirements/operator.txt requirements/build.txt requirements/
RUN pip wheel --wheel-dir /wheels --requirement requirements/operator.txt \
 && pip install --constraint requirements/build.txt setuptools
COPY pyproject.toml README.md* ./
COPY mabeam ./mabeam
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheels \
        --constraint requirements/operator.txt mabeam \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="mabeam-operator" \
      org.opencontainers.image.description="MABEAM Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
COPY --from=builder /opt/venv /opt/venv
# The base image's own installers are build tools too: nothing is installed at run time.
RUN python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel
USER 65532:65532
# 8080: kopf liveness (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["mabeam"]
CMD ["run"]
