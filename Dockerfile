# fedgate image: Debian 12 (bookworm) with its Python 3.11 and Debian's gfal2 (the PyPI
# gfal2 does not build against Debian's libgfal2), exposed to the venv the way
# scripts/gfal2-venv.sh does it. Runs as a non-root user; works with a read-only root
# filesystem (writes only to /tmp and /var/lib/fedgate).
#
#   docker build -t fedgate .
#   docker run -p 8000:8000 -e FEDGATE_MASTER_KEY="$(docker run --rm fedgate vault genkey)" fedgate

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY tokens ./tokens
RUN python3 -m venv /opt/fedgate \
 && /opt/fedgate/bin/pip install --no-cache-dir -U pip \
 && /opt/fedgate/bin/pip install --no-cache-dir ".[all]" prometheus_client

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 ca-certificates tini \
      python3-gfal2 gfal2-plugin-xrootd gfal2-plugin-http gfal2-plugin-file \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/fedgate /opt/fedgate
# Debian's compiled gfal2 module, seen by the venv (as scripts/gfal2-venv.sh does).
RUN so=$(ls /usr/lib/python3/dist-packages/gfal2.cpython-311-*.so) \
 && mkdir -p /opt/fedgate/gfal2-debian \
 && ln -s "$so" /opt/fedgate/gfal2-debian/ \
 && site=$(/opt/fedgate/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && echo /opt/fedgate/gfal2-debian > "$site/gfal2-debian.pth" \
 && /opt/fedgate/bin/python -c 'import gfal2, gateway.app; print("gfal2", gfal2.get_version())'
RUN groupadd --system --gid 10001 fedgate \
 && useradd --system --uid 10001 --gid fedgate --home-dir /var/lib/fedgate --shell /usr/sbin/nologin fedgate \
 && mkdir -p /var/lib/fedgate && chown fedgate:fedgate /var/lib/fedgate
ENV PATH=/opt/fedgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FEDGATE_HOST=0.0.0.0 \
    FEDGATE_PORT=8000 \
    FEDGATE_STATE_DIR=/var/lib/fedgate
USER 10001:10001
WORKDIR /var/lib/fedgate
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# tini forwards SIGTERM to fedgate, which lets running transfers finish (--graceful-timeout).
ENTRYPOINT ["tini", "--", "fedgate"]
CMD ["serve"]
