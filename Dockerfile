# dcmrecv: DICOM storage receiver (C-STORE SCP) image.
#
#   docker build -t dcmrecv .
#   podman build --format docker -t dcmrecv .    (the OCI format has no HEALTHCHECK)
#   docker run -d -p 11112:11112 -v "$PWD/data:/data" dcmrecv
#
# Configuration: DCMRECV_* environment variables (an option's long name, upper-cased,
# dashes as underscores; DCMRECV_PORT for the port) or dcmrecv options after the image
# name, which win over the variables.  See "Running in a container" in README.md.
#
# BASE_IMAGE: any image with Python 3.11 or later that can create a venv
# (python3 -m venv).  Both stages use it, so the venv built in the second stage runs
# on the same interpreter.
ARG BASE_IMAGE=python:3.11-slim

# --- stage 1: wheels of this project and its dependencies -------------------------------
FROM ${BASE_IMAGE} AS build
# The builder's pip settings, when it passes them (e.g. a package index mirror).
# Declared only in this stage: nothing of them reaches the final image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dcmrecv ./dcmrecv
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --wheel-dir /wheels '.[postgresql]'

# --- stage 2: the runtime --------------------------------------------------------------
FROM ${BASE_IMAGE}
# The venv is filled from stage 1's wheels only (no index, so no network), then loses
# pip and setuptools: the receiver needs neither, and an image without them is smaller
# and offers less to an intruder.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/dcmrecv \
 && /opt/dcmrecv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /wheels 'dcmrecv[postgresql]' \
 && /opt/dcmrecv/bin/pip uninstall --yes --quiet setuptools pip \
 && groupadd --system --gid 10001 dcmrecv \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin dcmrecv \
 && mkdir -p /data /etc/dcmrecv \
 && chown 10001:10001 /data

# The association negotiation profiles: storescp.cfg (Default, AllDICOM, ...) and the
# ready-made ones in profiles/, e.g. DCMRECV_CONFIG_FILE=/etc/dcmrecv/profiles/lossless.cfg.
COPY storescp.cfg /etc/dcmrecv/storescp.cfg
COPY profiles /etc/dcmrecv/profiles

# The default receiver: every storage SOP class of the Default profile, files into
# /data, port 11112 (104 needs privileges), and INFO logging on stderr, so that
# `docker logs` shows one "Association summary" line per association.
ENV PATH=/opt/dcmrecv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    DCMRECV_PORT=11112 \
    DCMRECV_CONFIG_FILE=/etc/dcmrecv/storescp.cfg \
    DCMRECV_PROFILE=Default \
    DCMRECV_OUTPUT_DIRECTORY=/data \
    DCMRECV_LOG_LEVEL=info \
    DCMRECV_SHUTDOWN_TIMEOUT=8

VOLUME ["/data"]
# 11180: /metrics, /healthz and /readyz when the receiver runs with
# DCMRECV_HTTP_PORT=11180 DCMRECV_HTTP_ADDRESS=0.0.0.0 (off by default).  Not 9090,
# Prometheus' own port, nor 9091-9999, the ports Prometheus lists for its exporters.
EXPOSE 11112 11180
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /data

# A real C-ECHO, not a process check: a receiver that is alive but refuses
# associations or has stopped answering is reported unhealthy.  The probe reads
# DCMRECV_PORT and DCMRECV_AETITLE like the receiver does.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "-m", "dcmrecv.commands.healthcheck"]

# docker stop sends SIGTERM: the receiver stops accepting, lets running associations
# finish for up to DCMRECV_SHUTDOWN_TIMEOUT=8 s, aborts what is left and exits 0.
# 8 s, not the receiver's own 30 s: `docker stop`, `podman stop` and `docker compose
# down` send SIGKILL after 10 s, Kubernetes after 30 s.  For longer transfers raise
# both: DCMRECV_SHUTDOWN_TIMEOUT=30 and `docker stop -t 45` (stop_grace_period,
# terminationGracePeriodSeconds), as docker-compose.yml and deploy/kubernetes.yaml do.
# Incomplete files are never renamed into place.
STOPSIGNAL SIGTERM
ENTRYPOINT ["dcmrecv"]
CMD []
