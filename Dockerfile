# The chainflow binary, for docker-compose.kafka.yml.
FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libsasl2-dev libssl-dev libzstd-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin chainflow

FROM debian:bookworm-slim
# curl: the compose file's health checks ask each service's /healthz
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 libsasl2-2 libcurl4 libzstd1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/chainflow /usr/local/bin/chainflow
USER 65534
ENTRYPOINT ["chainflow"]
