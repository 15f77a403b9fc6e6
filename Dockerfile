# fluxlora operator image. Build: docker build -t ghcr.io/fluxlora/operator:0.1.0 .
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY configs ./configs
COPY trainer-image/fluxlora_trainer ./trainer-image/fluxlora_trainer
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 1000 --user-group --no-create-home --shell /usr/sbin/nologin fluxlora
USER 1000:1000
# 8080: liveness (kopf, --liveness); 8081: readiness (--readiness, the chart turns it on)
EXPOSE 8080 8081
ENTRYPOINT ["fluxlora", "operator"]
