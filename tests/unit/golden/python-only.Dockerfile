# GENERATED FILE: do not edit. Regenerate with `imagebot render`;
# CI fails when it is stale (`imagebot render --check`).
# Sources: imagebot.toml (image 'lab'), requirements/*.toml and *.lock.
# Sets, in layer order: notebook, stats.
# `imagebot build` builds the 'system' stage and adds the Python packages at the
# registry, a deterministic layer per package or group (docs/images.md, "Layers").
# Built as is, with BuildKit from the repository root, it gives the same files, e.g.
#   DOCKER_BUILDKIT=1 docker build -f <this file> \
#     --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt .
# Optional secret `netrc` carries index credentials; neither lands in a layer.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS system
ARG BASE_IMAGE
ARG DEBIAN_FRONTEND=noninteractive

# Static labels; the build adds revision, created and version.
LABEL org.opencontainers.image.title="lab" \
      org.opencontainers.image.description="JupyterLab with the requirement sets notebook, stats" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

# One venv for every Python layer; jovyan can read but not change it. pip in a pod
# installs into the user's site-packages instead, which is imported first
# (imagebot/incontainer/user_site.py).
RUN --mount=type=bind,source=imagebot/incontainer/user_site.py,target=/tmp/user_site.py \
    python3 -m venv /opt/venv && /opt/venv/bin/python /tmp/user_site.py && rm -rf /root/.cache

RUN useradd --uid 1000 --gid 100 --no-log-init --create-home --shell /bin/bash jovyan
USER 1000:100
WORKDIR /home/jovyan
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]

# The Python packages: one layer per set here; `imagebot build` lays them on the
# 'system' stage itself. SOURCE_DATE_EPOCH makes pip write hash-checked .pyc files.
FROM system
USER root
# Where the build downloads locked wheels; a CI mirror may override it.
ARG PIP_INDEX_URL=https://pypi.org/simple

# Layer 1: set 'notebook' (Notebook).
RUN --mount=type=bind,source=requirements/notebook.lock,target=/tmp/imagebot/notebook.lock \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    --mount=type=secret,id=netrc,target=/root/.netrc,required=false \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SOURCE_DATE_EPOCH=0 \
    python -m pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: \
        -r /tmp/imagebot/notebook.lock

# Layer 2: set 'stats'.
RUN --mount=type=bind,source=requirements/stats.lock,target=/tmp/imagebot/stats.lock \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    --mount=type=secret,id=netrc,target=/root/.netrc,required=false \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SOURCE_DATE_EPOCH=0 \
    python -m pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: \
        -r /tmp/imagebot/stats.lock

# Last: every installed distribution's requirements are met.
USER 1000:100
RUN python -m pip check
