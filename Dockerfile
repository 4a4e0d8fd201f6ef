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

# Runtime stage: the virtualenv only, run by an unprivileged user.
FROM python:3.11-slim
RUN groupadd --system sms-bridge \
    && useradd --system --gid sms-bridge --home-dir /var/lib/sms-bridge --shell /usr/sbin/nologin sms-bridge \
    && mkdir -p /var/lib/sms-bridge \
    && chown sms-bridge:sms-bridge /var/lib/sms-bridge \
    && chmod 0700 /var/lib/sms-bridge
COPY --from=build /opt/sms-bridge /opt/sms-bridge
COPY config/bridge.example.toml /etc/sms-bridge/bridge.example.toml
ENV PATH=/opt/sms-bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BRIDGE_DATA_DIR=/var/lib/sms-bridge \
    BRIDGE_PUBLIC_LISTEN=0.0.0.0:8080 \
    BRIDGE_INTERNAL_LISTEN=0.0.0.0:8081 \
    BRIDGE_LOG_FORMAT=json
USER sms-bridge
VOLUME ["/var/lib/sms-bridge"]
# 8080: Twilio-facing (publish it). 8081: internal API for the PBX (keep it private).
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8081/health', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["sms-bridge"]
CMD ["serve"]
