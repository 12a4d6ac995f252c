# syntax=docker/dockerfile:1
#
# The service image (the last stage, `runtime`) and the one-shot migration image (`migrate`) that
# docker-compose.yml runs before the service:
#
#   docker build -t reader-reactions .
#   docker build --target migrate -t reader-reactions-migrate .
#
# Dependencies are compiled in a layer of their own (cargo-chef), rebuilt only when Cargo.toml or
# Cargo.lock change, so a change to the code rebuilds the crate alone.

ARG RUST_IMAGE=rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# /data becomes the runtime image's working directory: where the embedded store's default file
# goes when DATABASE_URL is not set.
RUN cargo build --release --locked --bin reader-reactions && mkdir /data

# sqlx-cli, PostgreSQL only, for the migration step.
FROM ${RUST_IMAGE} AS sqlx-cli
RUN cargo install sqlx-cli --version 0.9.0 --locked --no-default-features --features postgres,rustls

# Applies migrations/ to DATABASE_URL with sqlx-cli and exits: what the service does at start-up
# with MIGRATE_ON_START=true, as a step of its own.
FROM gcr.io/distroless/cc-debian12:nonroot AS migrate
COPY --from=sqlx-cli /usr/local/cargo/bin/sqlx /usr/local/bin/sqlx
COPY migrations/*.sql /migrations/
ENTRYPOINT ["/usr/local/bin/sqlx", "migrate", "run", "--source", "/migrations"]

# The service: the binary on a distroless base (glibc, CA certificates, no shell), as a
# non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /build/target/release/reader-reactions /usr/local/bin/reader-reactions
COPY --from=builder --chown=65532:65532 /data /data
WORKDIR /data
USER 65532:65532
ENV LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
EXPOSE 8080
# The image has no curl: the binary asks itself (GET /healthz on LISTEN_ADDR).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/reader-reactions", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/reader-reactions"]
