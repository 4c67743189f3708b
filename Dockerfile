# Multi-stage build: compile in the Rust image, run in a slim Debian with git and CA roots.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin agentgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 agentgate \
 && useradd --system --uid 10001 --gid agentgate --home /var/lib/agentgate --create-home agentgate
COPY --from=build /src/target/release/agentgate /usr/local/bin/agentgate
# Numeric, so that Kubernetes' runAsNonRoot can check it (deploy/kubernetes/deployment.yaml).
USER 10001:10001
WORKDIR /var/lib/agentgate
ENV AGENTGATE__SERVER__BIND=0.0.0.0:4444 \
    AGENTGATE__SERVER__DATA_DIR=/var/lib/agentgate \
    AGENTGATE__SERVER__DEV_LOGIN=false \
    AGENTGATE__WEBHOOKS__ALLOW_LOOPBACK=false \
    AGENTGATE__SERVER__DEMO_AGENT=true \
    AGENTGATE__LOG__FORMAT=json
EXPOSE 4444
ENTRYPOINT ["agentgate"]
CMD ["serve"]
