# syntax=docker/dockerfile:1
#
# One image for every LogiCore process: `logicore all`, `gateway`, `users`, `inventory`, `orders`, `migrate`
# and the operator commands. Build:  docker build -t logicore:dev .
# Run:                               docker run --rm -p 8080:8080 -e DATABASE_URL=… logicore:dev gateway
#
# Four stages:
#   chef     - the Rust toolchain of rust-toolchain.toml, protoc, and cargo-chef
#   planner  - computes recipe.json: the workspace's manifests and lock file reduced to what decides the
#              dependency build (no source code), so it changes only when dependencies change
#   builder  - builds the dependencies from the recipe (a cached layer), then the workspace itself
#   runtime  - distroless: the binary and nothing that could run a shell
#
# Why cargo-chef rather than copying the manifests and dummy `src/lib.rs` files by hand: the workspace is
# `members = ["crates/*"]` and crates come and go (and declare benches, examples and build targets that a
# dummy tree must mirror exactly or Cargo refuses the manifest). A hand-written list in this file would go
# stale silently, and a stale list either fails the build or, worse, caches nothing. cargo-chef derives the
# skeleton from the real manifests every time, so a new crate needs no change here.

# The builder's Debian release must match the runtime's (bookworm = Debian 12): the binary links glibc
# dynamically, and distroless/cc-debian12 carries bookworm's glibc and libgcc_s.
FROM rust:1.95-bookworm AS chef
# protoc and the protobuf well-known types: etcd-client compiles etcd's .proto files in its build script
# (without libprotobuf-dev it fails on google/protobuf/descriptor.proto).
# DL3008 (pin apt versions) is ignored on purpose: Debian replaces a package version in place when it ships a
# security fix, so a pinned version vanishes from the mirror and breaks the build; the bookworm base tag already
# fixes the release, and protoc's version does not change the binary LogiCore builds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
# Pinned: a new cargo-chef release could change the recipe format between the planner and builder layers.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src
# rust-toolchain.toml pins the exact toolchain (and its components). Installing it here, in its own layer,
# means the image's 1.95.x and the pinned 1.95.0 cannot differ silently, and the download (if any) is cached.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustc --version

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when recipe.json (manifests, Cargo.lock) changes, not on a code change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --package logicore --bin logicore
COPY . .
RUN cargo build --release --locked --package logicore --bin logicore \
    && install -D -m 0755 target/release/logicore /out/logicore

# distroless/cc: glibc, libgcc_s, CA certificates and /etc/passwd with a `nonroot` user (65532), and no
# shell, package manager or coreutils: nothing for an intruder to run. That is also why every health check
# (here, in docker-compose.yml and in the Helm chart) calls `logicore probe` in exec form instead of curl.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

# Filled in by the build (CI passes the git commit, the time and the repository's URL); the defaults say
# plainly that nobody did, rather than carrying a made-up value.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="logicore" \
      org.opencontainers.image.description="LogiCore logistics platform: API gateway, users, inventory and orders services in one binary" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/logicore /usr/local/bin/logicore

# A container is reached from outside its own network namespace, so every listener binds all interfaces
# (LogiCore's default, 127.0.0.1, suits a laptop). Still overridable with -e SERVICE_HOST=….
ENV SERVICE_HOST=0.0.0.0
# `config/<LOGICORE_ENV>.toml` is looked up relative to the working directory; mount files there if used.
WORKDIR /app

# gateway, gateway admin (/metrics, detailed /readyz, /admin/*), users, inventory, orders
EXPOSE 8080 9901 4001 8000 4003

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532

# The default command runs the gateway (and `all` runs it too) on 8080; a container running one service
# overrides this check with its own port (docker-compose.yml, and the chart uses Kubernetes probes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/logicore", "probe", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["/usr/local/bin/logicore"]
CMD ["all"]
