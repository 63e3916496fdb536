# The prediction service. No MLflow, DVC, pandera or TensorFlow: `.[serve]` only, unless the champion
# is the Keras network (build with --build-arg EXTRAS=serve,tensorflow). Build context: the repo root.
#   docker build -f docker/service.Dockerfile -t mloop-service .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY service ./service
ARG EXTRAS=serve
# Versions: the constraints file pins every package (made by benchmarks/image_sizes.py --lock).
COPY docker/constraints-service.txt ./constraints.txt
# hadolint ignore=DL3013
RUN pip install --constraint constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mloop \
 && useradd --system --uid 10001 --gid mloop --home-dir /app --no-create-home mloop \
 && mkdir -p /app /data /models \
 && chown mloop:mloop /app /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLOOP_BUNDLE_DIR=/models/champion \
    MLOOP_PREDICTION_LOG_URL=sqlite:////data/predictions.db
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

# The service with the champion bundle baked in (the deploy job's `service-model` image):
#   docker build -f docker/service.Dockerfile --target model -t mloop-service-model .
FROM runtime AS model
COPY --chown=10001:10001 models/champion /models/champion
