# Postflight: the daemon in a slim image, running as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY checks ./checks
COPY alerting ./alerting
COPY common ./common
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[fast,postgres]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 postflight
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/postflight.example.yaml /etc/postflight/postflight.example.yaml
USER postflight
WORKDIR /home/postflight
# Any mounted config, not only the example: every interface at the port EXPOSEd and the
# HEALTHCHECK asks (an override: 127.0.0.1 in a container is reachable by nothing else),
# and the working directory is the volume, where the default `sqlite:///./postflight.db`
# (and the example's `${POSTFLIGHT_STORE}`) keeps the store.
ENV POSTFLIGHT_CONFIG=/etc/postflight/postflight.yaml \
    POSTFLIGHT__SERVER__LISTEN=0.0.0.0:8787 \
    POSTFLIGHT_STORE=sqlite:////home/postflight/data/postflight.db \
    PYTHONUNBUFFERED=1
RUN mkdir -p /home/postflight/data
WORKDIR /home/postflight/data
VOLUME ["/home/postflight/data"]
EXPOSE 8787
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8787/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["postflight", "run"]
