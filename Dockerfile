# syntax=docker/dockerfile:1
# The MABEAM operator image: `docker build -t ghcr.io/mabeam/operator:0.1.0 .`
#
# Two stages: the builder builds wheels for mabeam and its pinned dependencies (downloaded with
# their hashes checked) and installs exactly those wheels into a virtualenv at /opt/venv (no
# resolution: a constraints file with hashes would put pip in hash-checking mode for the local
# mabeam wheel too; `pip check` proves the set complete); the final stage copies only that virtualenv onto a clean
# base (no compiler, no pip cache, no sources). The final image runs as a numeric non-root
# user and writes nothing outside /tmp, so it runs with readOnlyRootFilesystem (the Helm chart
# mounts /tmp as an emptyDir).
#
# The base is pinned by the digest of its multi-architecture index (check it with
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm`); dependencies are downloaded
# with --require-hashes. Label the build with where it came from:
# `--build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD)`.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first: this layer is reused until the pins change.
COPY requirements/operator.txt requirements/build.txt requirements/
RUN pip wheel --require-hashes --wheel-dir /wheels --requirement requirements/operator.txt \
 && pip install --require-hashes --requirement requirements/build.txt
COPY pyproject.toml README.md* LICENSE ./
COPY mabeam ./mabeam
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/mabeam/mabeam
LABEL org.opencontainers.image.title="mabeam-operator" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
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
