# syntax=docker/dockerfile:1
# props-pipeline image: built with Rust on Debian 12 (bookworm), run on distroless cc-debian12: glibc,
# libgcc and CA certificates only (no shell, no package manager), as the image's nonroot user 65532.
# The binary needs no OpenSSL or protoc (rustls with compiled-in webpki roots). The data set is not in the
# image: `load` runs from an operator's machine (docs/OPERATIONS.md).
#
#   docker build -t props-pipeline:0.1.0 .
#   docker run --rm props-pipeline:0.1.0 --help
#
# Base images are pinned by tag here; a release pipeline should pin them by digest
# (FROM image:tag@sha256:...) once it can resolve one.
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Kubernetes probes /healthz and /readyz, and distroless has no shell or curl to run one

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Keep symbol names (readable panics and backtraces), drop debug info: a much smaller binary.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
# The whole context (.dockerignore keeps target/, .git, emulator state and outputs out), so every target
# Cargo.toml may declare is present; the cache mounts keep crates and incremental builds between builds.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin props-pipeline \
 && install -D -m 0755 target/release/props-pipeline /out/props-pipeline

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/props-pipeline /usr/local/bin/props-pipeline
# Cloud Logging's JSON shape and the probe/metrics port; the k8s ConfigMap sets both again.
ENV PROPS_LOG_FORMAT=json \
    PROPS_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
# nonroot:nonroot in distroless; numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/props-pipeline"]
CMD ["--help"]
