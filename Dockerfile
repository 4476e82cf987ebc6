# syntax=docker/dockerfile:1
# Zhida dispatch worker image.
#
#   docker build -t zhida .
#   docker run --rm -e ZHIDA_BOOTSTRAP=kafka:9092 -p 6066:6066 zhida
#
# HTTP on 6066: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The build context is filtered by .dockerignore (no .venv, .git, caches, data dirs).
COPY . /src
RUN pip install . \
    && rm -rf /src

# Unprivileged runtime user; faust keeps its local state (<app>-data/) in the working dir.
RUN groupadd --system --gid 10001 zhida \
    && useradd --system --uid 10001 --gid zhida --home-dir /var/lib/zhida --shell /usr/sbin/nologin zhida \
    && mkdir -p /var/lib/zhida \
    && chown zhida:zhida /var/lib/zhida

WORKDIR /var/lib/zhida
USER zhida

ENV ZHIDA_BOOTSTRAP=kafka:9092 \
    ZHIDA_HTTP_HOST=0.0.0.0
EXPOSE 6066

# No curl in slim images: probe /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=4).status == 200 else 1)"]

# Shell wrapper so ${ZHIDA_BOOTSTRAP} is expanded at run time; exec keeps zhida as PID 1
# so it receives SIGTERM directly.
CMD ["sh", "-c", "exec zhida worker --bootstrap \"${ZHIDA_BOOTSTRAP}\" --http-port 6066"]
