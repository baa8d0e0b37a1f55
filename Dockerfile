# OrderFlow container image: one static binary (`orderflow`) that runs every
# role through its subcommands: api, worker, migrate, healthcheck, ...
#
#   docker build -t orderflow:local .
#   docker run --rm orderflow:local --help
#
# Only Docker Hub short names are used for base images.

########################################################################
# Build stage
########################################################################
FROM golang:1.26-bookworm AS build

# go.mod pins an exact Go patch release; let the go command fetch that
# toolchain from the module proxy if this image's Go is older (the official
# image defaults to GOTOOLCHAIN=local, which would fail instead).
ENV GOTOOLCHAIN=auto \
    CGO_ENABLED=0

WORKDIR /src

# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
RUN go build -trimpath -o /out/orderflow ./cmd/orderflow

########################################################################
# Runtime stage: minimal Debian, CA certificates, non-root user
########################################################################
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orderflow \
    && useradd --system --uid 10001 --gid orderflow --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin orderflow

COPY --from=build /out/orderflow /usr/local/bin/orderflow

# Numeric IDs so orchestrators can verify runAsNonRoot.
USER 10001:10001

# 8080: HTTP API (orderflow api); 9090: Prometheus metrics (orderflow worker).
EXPOSE 8080 9090

ENTRYPOINT ["/usr/local/bin/orderflow"]
