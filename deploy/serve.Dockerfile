# The online scoring service (pipelines/serving, `fraud-serve`): the portable scorer behind a REST API.
# No JVM and no Spark: the project is installed with its [serve] extra only (never [batch]).
#   docker build -f deploy/serve.Dockerfile -t fraud-serve:0.1.0 .
#   docker run --rm -p 8000:8000 -e MLFLOW_TRACKING_URI=https://mlflow.internal \
#     -e FRAUD_SERVE_TOKEN_FILE=/run/secrets/fraud-serve-tokens \
#     -v "$PWD/.secrets/tokens:/run/secrets/fraud-serve-tokens:ro" fraud-serve:0.1.0
# Everything after `fraud-serve:0.1.0` replaces CMD (keep --host 0.0.0.0 in a container).

# --- build: a venv with the pinned dependencies and the project ------------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, in a layer of their own, so that a code change does not reinstall them:
# setup.py needs its package folders to exist, not their code (find_packages looks for
# pipelines/__init__.py; jobs/ is for the Spark jobs and is left out of this image).
COPY setup.py constraints.txt ./
COPY pipelines/__init__.py pipelines/__init__.py
RUN pip install --no-cache-dir -c constraints.txt ".[serve]"

# Then the code: the project alone, its dependencies already in place.
COPY pipelines pipelines
RUN pip install --no-cache-dir --no-deps --force-reinstall -c constraints.txt ".[serve]" \
 && pip check

# --- runtime: the venv and conf/ on a clean base, run as an unprivileged user ----------------
FROM python:3.11.14-slim-bookworm

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it from the image.
RUN groupadd --system --gid 10001 fraud \
 && useradd --system --uid 10001 --gid fraud --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin fraud

COPY --from=build /opt/venv /opt/venv
# pipelines.core.config finds conf/<env>.toml under FRAUD_PROJECT_ROOT (the package itself sits
# in the venv's site-packages, not next to conf/).
WORKDIR /opt/fraud-serve
COPY conf conf

# /tmp is the only place written to (Kubernetes mounts an emptyDir there and keeps the root
# file system read-only): numba's cache of the compiled tree walk (NUMBA_CACHE_DIR) and MLflow's
# ~/.config (HOME). MLflow's usage telemetry, which would call out to the internet, is off.
ENV PATH=/opt/venv/bin:$PATH \
    FRAUD_PROJECT_ROOT=/opt/fraud-serve \
    NUMBA_CACHE_DIR=/tmp/numba \
    HOME=/tmp \
    MLFLOW_DISABLE_TELEMETRY=true \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
EXPOSE 8000
# For `docker run` only (Kubernetes ignores it and probes /healthz and /readyz itself).
# There is no curl in the slim image; Python's urllib fails the check on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["fraud-serve"]
CMD ["--env", "cluster", "--host", "0.0.0.0", "--port", "8000"]
