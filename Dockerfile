# syntax=docker/dockerfile:1
# The operator's images, from one build:
#   docker build --target webhook    -t ghcr.io/example/website-webhook:0.1.0 .
#   docker build --target controller -t ghcr.io/example/website-controller:0.1.0 .
#   docker build --target api        -t ghcr.io/example/website-api:0.1.0 .   (optional, api.enabled)
# The chart (charts/website-operator) refers to these repositories; its tag defaults to the chart's appVersion.

ARG RUST_VERSION=1.89

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit caches keep the registry and the target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p website-webhook -p website-controller -p website-api --bins \
 && mkdir -p /out \
 && cp target/dist/website-webhook target/dist/website-controller target/dist/website-api /out/

# Runtime: distroless with glibc and CA certificates, no shell, user 65532 ("nonroot"),
# matching the chart's runAsUser and read-only root filesystem.
FROM gcr.io/distroless/cc-debian12:nonroot AS webhook
COPY --from=build /out/website-webhook /usr/local/bin/website-webhook
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/website-webhook"]

FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /out/website-controller /usr/local/bin/website-controller
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/website-controller"]

FROM gcr.io/distroless/cc-debian12:nonroot AS api
COPY --from=build /out/website-api /usr/local/bin/website-api
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/website-api"]
