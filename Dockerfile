# The exporter's image: a static binary on a static, non-root base, read-only, no capabilities
# needed (what the chart's securityContext asks).
#
# Release path, as the Prometheus exporters do: `make image` builds the binary with `make build`
# (CGO off, version information) into .build/<os>-<arch>/ and copies it in:
#   docker build --target release -t ghcr.io/meshcert/meshcert-exporter:<version> .
# From source, for users with a registry: the default target builds the binary in a Go image.
#   docker build -t meshcert-exporter .
# BASE is any static base; gcr.io/distroless/static-debian12:nonroot by default, scratch works
# (the binary needs no libc, no CA file and no user database).
ARG BASE=gcr.io/distroless/static-debian12:nonroot
ARG GO_IMAGE=docker.io/library/golang:1.26

FROM ${BASE} AS release
ARG TARGETOS=linux
ARG TARGETARCH=amd64
COPY .build/${TARGETOS}-${TARGETARCH}/meshcert-exporter /bin/meshcert-exporter
USER 65534:65534
EXPOSE 9733
ENTRYPOINT ["/bin/meshcert-exporter"]

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN make build GOOS=${TARGETOS} GOARCH=${TARGETARCH}

FROM ${BASE} AS source
ARG TARGETOS=linux
ARG TARGETARCH=amd64
COPY --from=build /src/.build/${TARGETOS}-${TARGETARCH}/meshcert-exporter /bin/meshcert-exporter
USER 65534:65534
EXPOSE 9733
ENTRYPOINT ["/bin/meshcert-exporter"]
