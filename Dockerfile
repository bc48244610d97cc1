# Restora: the same build as `make install`, serving on all interfaces inside the container.
# Note: from PyPI, torch==2.13.0 is the CUDA build (it runs on CPU too, but is large). For a
# CPU-only image add the CPU wheel index: --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim

ARG PIP_EXTRA_INDEX_URL=
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PIP_NO_CACHE_DIR=1 \
    RESTORA_DATA_DIR=/data

RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc g++ libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml Makefile README.md ./
COPY server ./server
COPY pipelines ./pipelines
COPY bundles ./bundles
RUN make install PYTHON=python3

VOLUME /data
EXPOSE 13490
# serve installs the embedded x4plus into a new volume at its first start (offline).
CMD [".venv/bin/restora", "serve", "--host", "0.0.0.0", "--port", "13490"]
