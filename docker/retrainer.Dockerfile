# The retrainer: receives Alertmanager's webhooks and runs the pipeline (DVC, MLflow, every candidate
# including the Keras network) in the checkout mounted at /workspace. Build context: the repo root.
#   docker build -f docker/retrainer.Dockerfile -t mloop-retrainer .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY service ./service
COPY retrainer ./retrainer
ARG EXTRAS=serve,pipeline,retrain,tensorflow
# Versions: the constraints file pins every package (made by benchmarks/image_sizes.py --lock).
COPY docker/constraints-retrainer.txt ./constraints.txt
# hadolint ignore=DL3013
RUN pip install --constraint constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
# git: DVC reads the checkout's history (dvc.lock, params) and the lineage records the commit.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.39.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mloop \
 && useradd --system --uid 10001 --gid mloop --home-dir /home/mloop --create-home mloop \
 && git config --system --add safe.directory /workspace
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    MLOOP_RETRAINER_REPO_DIR=/workspace \
    MLOOP_RETRAINER_BUNDLE_DIR=/workspace/models/champion \
    MLOOP_RETRAINER_PREDICTION_LOG_URL=sqlite:////data/predictions.db
WORKDIR /workspace
USER 10001:10001
EXPOSE 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/health', timeout=2)"]
CMD ["python", "-m", "retrainer", "--host", "0.0.0.0", "--port", "8090"]
