# fluxlora operator image: the `fluxlora` distribution only (kopf, the kubernetes client, the
# dashboard). The in-pod runtime, torch and dlib live in trainer-image/ and never come here.
#
# Build from the repository root:
#   docker build -t ghcr.io/fluxlora/operator:0.1.0 .
# PYTHON_IMAGE: any image with Python >= 3.11 and its venv module (`make images` passes a Debian
# base built from Debian's packages, no registry being reachable there).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# operator/fluxlora/configs is a link to these profiles: without them the package has no profiles.
COPY configs ./configs
RUN python3 -m venv /opt/build && /opt/build/bin/pip wheel --wheel-dir /wheels '.[operator]'

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
COPY --from=build /wheels /wheels
# The wheels were built from this source above (--no-index: nothing else is installed).
# hadolint ignore=DL3013
RUN python3 -m venv /opt/venv \
 && pip install --no-index --find-links /wheels 'fluxlora[operator]' \
 && rm -rf /wheels \
 && fluxlora --help > /dev/null \
 && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin fluxlora
USER 1000:1000
# 8080: liveness (kopf, --liveness); 8081: readiness (--readiness, the chart turns it on)
EXPOSE 8080 8081
ENTRYPOINT ["fluxlora", "operator"]
