# Container image for oktasync: a release build on Debian 12, run on distroless (non-root).
# Build: docker build -t oktasync:dev .   (BuildKit, the default builder since Docker 23,
# for the cache mounts). See "Deploy" in README.md.

# Same Debian release as the runtime image, so the binary's glibc matches the one it runs on.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds; the binary is
# copied out of the cached target/ in the same step because that mount is gone afterwards.
# The empty state directory is made here because the runtime image has no shell to make it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p oktasync \
    && install -D -m 0755 target/release/oktasync /out/oktasync \
    && mkdir -p /out/state

# distroless/cc: glibc, libgcc and CA certificates (for Okta over https), nothing else: no
# shell, no package manager. The :nonroot variant's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/oktasync /usr/local/bin/oktasync
# The SQLite store's home, owned by the runtime user so a fresh named volume mounted there
# inherits a writable owner. A relative store URL also resolves here.
COPY --from=builder --chown=65532:65532 /out/state /var/lib/oktasync
WORKDIR /var/lib/oktasync
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/oktasync"]
CMD ["--config", "/etc/oktasync/oktasync.toml", "run"]
