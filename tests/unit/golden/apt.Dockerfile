# GENERATED FILE: do not edit. Regenerate with `imagebot render`;
# CI fails when it is stale (`imagebot render --check`).
# Sources: imagebot.toml (image 'lab'), requirements/*.toml and *.lock.
# Sets, in layer order: system, notebook, stats.
# `imagebot build` builds the 'system' stage and adds the Python packages at the
# registry, a deterministic layer per package or group (docs/images.md, "Layers").
# Built as is, with BuildKit from the repository root, it gives the same files, e.g.
#   DOCKER_BUILDKIT=1 docker build -f <this file> \
#     --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt .
# Optional secret `netrc` carries index credentials; neither lands in a layer.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS system
ARG BASE_IMAGE
ARG IMAGEBOT_INDEX_URL=https://index.example.org/simple
ARG DEBIAN_FRONTEND=noninteractive

# Static labels; the build adds revision, created and version.
LABEL org.opencontainers.image.title="lab" \
      org.opencontainers.image.description="JupyterLab with the requirement sets system, notebook, stats" \
      org.opencontainers.image.source="https://example.org/stats/images" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

# System packages: the apt entries of every set, plus R when a set has R packages.
RUN --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    apt-get update \
    && apt-get install -y --no-install-recommends 'git=1:2.39.5*' 'libpq5=15.14*' \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# One venv for every Python layer; jovyan can read but not change it. pip in a pod
# installs into the user's site-packages instead, which is imported first: the module
# imagebot/incontainer/user_site.py (base64 below) installs itself into the venv.
RUN python3 -m venv /opt/venv \
    && echo IiIiYHBpcCBpbnN0YWxsYCBpbiBhIHBvZCBnb2VzIHRvIHRoZSB1c2VyJ3Mgc2l0ZS1wYWNrYWdlcywgd2hpY2ggaXMgaW1wb3J0ZWQgZmlyc3QuCgpUaGUgaW1hZ2UncyB2ZW52ICgvb3B0L3ZlbnYpIGJlbG9uZ3MgdG8gcm9vdCwgYW5kIGEgdmVudiBoaWRlcyB0aGUgdXNlcidzIHNpdGUtcGFja2FnZXMsIHNvIGEKcGxhaW4gYHBpcCBpbnN0YWxsIE5BTUU9PVZFUlNJT05gIGluIGEgcG9kIHdvdWxkIGZhaWwgKCJDYW4gbm90IHBlcmZvcm0gYSAnLS11c2VyJyBpbnN0YWxsIikuCkF0IGJ1aWxkIHRpbWUgdGhpcyBmaWxlIGluc3RhbGxzIGl0c2VsZiBpbnRvIHRoZSB2ZW52J3Mgc2l0ZS1wYWNrYWdlcyB3aXRoIGEgYC5wdGhgIGZpbGUgdGhhdApydW5zIGBlbmFibGUoKWAgYXQgZXZlcnkgaW50ZXJwcmV0ZXIgc3RhcnQuIGBlbmFibGUoKWAgdHVybnMgdGhlIHVzZXIgc2l0ZSBiYWNrIG9uLCB1bmxlc3MgYC1zYCwKYC1JYCBvciBQWVRIT05OT1VTRVJTSVRFIHR1cm5lZCBpdCBvZmYsIGFuZCBwdXRzIGl0IGp1c3QgYmVmb3JlIHRoZSB2ZW52J3Mgc2l0ZS1wYWNrYWdlcywgd2hlcmUgYQpQeXRob24gb3V0c2lkZSBhIHZlbnYgaGFzIGl0LiBwaXAgdGhlbiBkZWZhdWx0cyB0byBhIHVzZXIgaW5zdGFsbCAofi8ubG9jYWwsIG9uIHRoZSBwb2QncyBob21lCnZvbHVtZSkgZnJvbSB0aGUgdmV0dGVkIGluZGV4IHRoYXQgL2V0Yy9waXAuY29uZiBuYW1lcywgYW5kIHdoYXQgdGhlIHVzZXIgaW5zdGFsbGVkIHdpbnMgb3Zlcgp0aGUgaW1hZ2UncyB2ZXJzaW9uIG9mIHRoZSBzYW1lIHBhY2thZ2UsIGFzIGBwaXAgaW5zdGFsbCAtLXVzZXJgIGRvZXMgYW55d2hlcmUgZWxzZS4KClN0YW5kYXJkIGxpYnJhcnkgb25seTogaXQgcnVucyBvbiB0aGUgaW1hZ2UncyBweXRob24zIGF0IGV2ZXJ5IHN0YXJ0LgoiIiIKCmZyb20gX19mdXR1cmVfXyBpbXBvcnQgYW5ub3RhdGlvbnMKCmltcG9ydCBweV9jb21waWxlCmltcG9ydCBzaHV0aWwKaW1wb3J0IHNpdGUKaW1wb3J0IHN5cwppbXBvcnQgc3lzY29uZmlnCmZyb20gcGF0aGxpYiBpbXBvcnQgUGF0aAoKTU9EVUxFID0gIl9pbWFnZWJvdF91c2VyX3NpdGUiCgoKZGVmIGVuYWJsZShwYXRoOiBsaXN0W3N0cl0gfCBOb25lID0gTm9uZSkgLT4gTm9uZToKICAgICIiIlB1dCB0aGUgdXNlcidzIHNpdGUtcGFja2FnZXMgb24gYHBhdGhgIChzeXMucGF0aCkgYWhlYWQgb2YgdGhlIHZlbnYncywgYW5kIGFsbG93IGl0LiIiIgogICAgaWYgc3lzLmZsYWdzLm5vX3VzZXJfc2l0ZToKICAgICAgICByZXR1cm4KICAgIGVudHJpZXMgPSBzeXMucGF0aCBpZiBwYXRoIGlzIE5vbmUgZWxzZSBwYXRoCiAgICB1c2VyX3NpdGUgPSBzaXRlLmdldHVzZXJzaXRlcGFja2FnZXMoKQogICAgc2l0ZS5FTkFCTEVfVVNFUl9TSVRFID0gVHJ1ZQogICAgaWYgdXNlcl9zaXRlIGluIGVudHJpZXM6CiAgICAgICAgcmV0dXJuCiAgICB2ZW52X3NpdGUgPSBzeXNjb25maWcuZ2V0X3BhdGgoInB1cmVsaWIiKQogICAgcG9zaXRpb24gPSBlbnRyaWVzLmluZGV4KHZlbnZfc2l0ZSkgaWYgdmVudl9zaXRlIGluIGVudHJpZXMgZWxzZSBsZW4oZW50cmllcykKICAgIGVudHJpZXMuaW5zZXJ0KHBvc2l0aW9uLCB1c2VyX3NpdGUpCgoKZGVmIGluc3RhbGwoc2l0ZV9wYWNrYWdlczogUGF0aCkgLT4gTm9uZToKICAgICIiIkNvcHkgdGhpcyBtb2R1bGUgaW50byBgc2l0ZV9wYWNrYWdlc2AsIGNvbXBpbGVkIChoYXNoLWNoZWNrZWQpLCB3aXRoIGl0cyBgLnB0aGAgZmlsZS4iIiIKICAgIHRhcmdldCA9IHNpdGVfcGFja2FnZXMgLyBmIntNT0RVTEV9LnB5IgogICAgc2h1dGlsLmNvcHlmaWxlKF9fZmlsZV9fLCB0YXJnZXQpCiAgICAjIEEgaGFzaC1jaGVja2VkIC5weWMgaXMgdGhlIHNhbWUgYnl0ZXMgb24gZXZlcnkgYnVpbGQgYW5kIGlzIG5ldmVyIHJld3JpdHRlbiBhdCBydW4gdGltZS4KICAgIHB5X2NvbXBpbGUuY29tcGlsZSgKICAgICAgICBzdHIodGFyZ2V0KSwgZG9yYWlzZT1UcnVlLCBpbnZhbGlkYXRpb25fbW9kZT1weV9jb21waWxlLlB5Y0ludmFsaWRhdGlvbk1vZGUuQ0hFQ0tFRF9IQVNICiAgICApCiAgICAoc2l0ZV9wYWNrYWdlcyAvIGYie01PRFVMRX0ucHRoIikud3JpdGVfdGV4dChmImltcG9ydCB7TU9EVUxFfTsge01PRFVMRX0uZW5hYmxlKClcbiIpCgoKaWYgX19uYW1lX18gPT0gIl9fbWFpbl9fIjoKICAgIGluc3RhbGwoUGF0aChzeXNjb25maWcuZ2V0X3BhdGgoInB1cmVsaWIiKSkpCg== | base64 -d >/tmp/user_site.py \
    && /opt/venv/bin/python /tmp/user_site.py && rm -rf /tmp/user_site.py /root/.cache

# pip and uv in the running image install from the vetted index only.
RUN printf '%s\n' "# Only vetted packages are served by this index. Ask for one at https://example.org/stats/images#asking-for-a-package" "[global]" "index-url = ${IMAGEBOT_INDEX_URL}" > /etc/pip.conf \
    && mkdir -p /etc/uv \
    && printf '%s\n' "# Only vetted packages are served by this index. Ask for one at https://example.org/stats/images#asking-for-a-package" "[[index]]" "url = \"${IMAGEBOT_INDEX_URL}\"" "default = true" > /etc/uv/uv.toml

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

# Layer 1: set 'system'.
RUN --mount=type=bind,source=requirements/system.lock,target=/tmp/imagebot/system.lock \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    --mount=type=secret,id=netrc,target=/root/.netrc,required=false \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SOURCE_DATE_EPOCH=0 \
    python -m pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: \
        -r /tmp/imagebot/system.lock

# Layer 2: set 'notebook' (Notebook).
RUN --mount=type=bind,source=requirements/notebook.lock,target=/tmp/imagebot/notebook.lock \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt,required=false \
    --mount=type=secret,id=netrc,target=/root/.netrc,required=false \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SOURCE_DATE_EPOCH=0 \
    python -m pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: \
        -r /tmp/imagebot/notebook.lock

# Layer 3: set 'stats' has no Python packages.

# Last: every installed distribution's requirements are met.
USER 1000:100
RUN python -m pip check
