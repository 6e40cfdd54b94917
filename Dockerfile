# Trainer image: the same worker as the local builder, in a pinned environment.
# Built by core/builders/docker.py as altruism-lab/trainer:<code fingerprint> (target trainer).
# The serve stage below is the prediction service (`python -m core serve`), built with
#   docker build --target serve -t altruism-lab/serve .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS deps

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONHASHSEED=0 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin trainer
WORKDIR /app

# Dependency layer first: a change to core/ alone reuses it.
COPY requirements-trainer.txt /app/requirements-trainer.txt
RUN python -m pip install --no-cache-dir -r /app/requirements-trainer.txt

# Code layer.
FROM deps AS trainer
COPY core/ /app/core/
USER trainer
ENTRYPOINT ["python", "-m", "core.worker"]

# --- prediction service: the trainer's pins plus the registry client and the web stack ---
FROM deps AS serve-deps
COPY requirements-serve.txt /app/requirements-serve.txt
RUN python -m pip install --no-cache-dir -r /app/requirements-serve.txt

FROM serve-deps AS serve
COPY core/ /app/core/
USER trainer
EXPOSE 8000
ENTRYPOINT []
CMD ["python", "-m", "core", "serve", "--host", "0.0.0.0", "--port", "8000"]
