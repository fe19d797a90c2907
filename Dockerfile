# syntax=docker/dockerfile:1
#
# Neurocards: one image with both binaries.
#
#   docker build -t neurocards .
#   docker run --env-file .env -v neurocards-data:/data -p 10000:10000 neurocards     # the bot
#   docker run --env-file .env neurocards neurocards-worker                           # a worker
#
# Without DATABASE_URL the bot runs everything on the embedded SQLite store in /data (mount a
# volume there); with DATABASE_URL=postgres://… the bot and any number of workers share
# PostgreSQL (see compose.yaml and docs/operations.md).
#
# The schema needs no extra files or steps: `sqlx::migrate!` embeds migrations/postgres and
# migrations/sqlite into the binaries at compile time (neurocards-core/src/postgres/mod.rs and
# neurocards-core/src/sqlite/mod.rs), and both binaries migrate at start.

# The Rust toolchain of the workspace (rust-version = "1.95"), on bookworm like the runtime
# stage: a binary linked against a newer glibc (the plain `1.95` tag is trixie) would not start
# on bookworm-slim.
FROM lukemathwalker/cargo-chef:latest-rust-1.95-bookworm AS chef
WORKDIR /app

# The dependency recipe: changes only when a Cargo.toml or Cargo.lock does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: this layer stays cached until the recipe changes.
RUN cargo chef cook --release --locked -p neurocards-bot -p neurocards-worker -p neurocards-admin \
    --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p neurocards-bot -p neurocards-worker -p neurocards-admin

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Telegram, KIE.AI, OpenAI, YooKassa and PostgreSQL (rustls with the
# system's roots). tini: PID 1 that forwards SIGTERM, so a stop reaches the binary even before
# it installs its own handler (a bare PID 1 ignores SIGTERM without one) and reaps children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 neurocards \
    && useradd --system --uid 10001 --gid neurocards --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin neurocards \
    && install -d -o neurocards -g neurocards -m 0750 /data
COPY --from=builder /app/target/release/neurocards-bot /app/target/release/neurocards-worker \
     /app/target/release/neurocards-admin /usr/local/bin/
# The health check speaks HTTP over bash's /dev/tcp: the slim image has no curl or wget, and
# installing one only for this would add a TLS stack and its updates to the image.
COPY --chmod=0755 deploy/docker/healthcheck /usr/local/bin/neurocards-healthcheck

USER neurocards:neurocards
WORKDIR /data
VOLUME /data
ENV DATA_DIR=/data
# 10000: the bot's HTTP_ADDR; 10001: the worker's WORKER_HTTP_ADDR.
EXPOSE 10000 10001
# /healthz of the bot or the worker, whichever this container runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/neurocards-healthcheck"]
# Stopping takes seconds when idle; a worker (or an all-in-one bot) finishing a paid call
# may need up to 10 minutes: `docker stop -t 600`, compose's stop_grace_period: 10m.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["neurocards-bot"]
