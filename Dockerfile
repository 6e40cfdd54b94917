# Trainer image: the same worker as the local builder, in a pinned environment.
# Built by core/builders/docker.py as altruism-lab/trainer:<code fingerprint>.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

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
COPY core/ /app/core/
USER trainer
ENTRYPOINT ["python", "-m", "core.worker"]
