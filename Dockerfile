# syntax=docker/dockerfile:1
# Build stage: a wheel and its dependencies in a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN python -m venv /opt/sms-bridge \
    && /opt/sms-bridge/bin/pip install --upgrade pip \
    && /opt/sms-bridge/bin/pip install .

# Runtime stage: the virtualenv only, run by an unprivileged user with a fixed uid and gid
# (10001), so volumes can be prepared for it and runtimes can tell it is not root.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 sms-bridge \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sms-bridge \
        --shell /usr/sbin/nologin sms-bridge \
    && mkdir -p /var/lib/sms-bridge \
    && chown 10001:10001 /var/lib/sms-bridge \
    && chmod 0700 /var/lib/sms-bridge
COPY --from=build /opt/sms-bridge /opt/sms-bridge
COPY config/bridge.example.toml /etc/sms-bridge/bridge.example.toml
ENV PATH=/opt/sms-bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BRIDGE_DATA_DIR=/var/lib/sms-bridge \
    BRIDGE_PUBLIC_LISTEN=0.0.0.0:8080 \
    BRIDGE_INTERNAL_LISTEN=0.0.0.0:8081 \
    BRIDGE_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/var/lib/sms-bridge"]
# 8080: Twilio-facing (publish it). 8081: internal API for the PBX (keep it private).
EXPOSE 8080 8081
# Exec form, no shell: GET /health on the internal listener named by BRIDGE_INTERNAL_LISTEN
# (the environment wins over the TOML file, so this is the address the daemon listens on),
# reached over loopback when it listens on every address, never through a proxy; an error
# answer, or none, fails it. A bare interpreter starts in a tenth of the time the bridge's
# CLI takes to load, which matters every 15 seconds.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h, _, p = os.environ['BRIDGE_INTERNAL_LISTEN'].rpartition(':'); h = h.strip('[]'); h = '127.0.0.1' if h in ('', '0.0.0.0', '::') else h; h = f'[{h}]' if ':' in h else h; u.build_opener(u.ProxyHandler({})).open(f'http://{h}:{p}/health', timeout=2)"]
# SIGTERM drains in-flight requests for shutdown_timeout (10 s) before the pool closes: give
# `docker stop` longer than that (--stop-timeout 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sms-bridge"]
# Several worker processes in one container: -e BRIDGE_PROCESSES=4, or CMD serve --processes 4.
# The supervisor is then PID 1; it passes SIGTERM to its children and waits for them.
CMD ["serve"]
