# dcounter-node as a container image: docker build -t dcounter-node .
# Run: docker run -p 7946:7946 -p 8080:8080 -v dcounter-data:/data dcounter-node \
#          --advertise HOST:7946 [--join ADDR | --join-dns NAME:7946]
# See "Deploying" in the node README (packages/node/README.md).

FROM python:3.12-slim AS build
WORKDIR /src
# Only the three distributions a node needs, built from this checkout.
COPY packages/crdt packages/crdt
COPY packages/protocol packages/protocol
COPY packages/node packages/node
RUN pip wheel --no-cache-dir --wheel-dir /wheels \
        ./packages/crdt ./packages/protocol "./packages/node[fast]"

FROM python:3.12-slim
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin dcounter \
    && mkdir /data \
    && chown dcounter:dcounter /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "dcounter-node[fast]" \
    && rm -rf /wheels
COPY deploy/docker/node.toml /etc/dcounter/node.toml
ENV PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/data"]
# 7946: gossip (TCP), 8080: the HTTP API.
EXPOSE 7946 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"]
ENTRYPOINT ["dcounter-node", "--config", "/etc/dcounter/node.toml"]
