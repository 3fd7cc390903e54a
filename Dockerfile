# syntax=docker/dockerfile:1
# Multi-stage build: the binaries on a small Debian base, run as a non-root
# user. The image holds `idp`, the demo relying party, and the demo
# entrypoint used by docker-compose.yml.
#
# idp is built with cgo and the openssl tag, so OpenSSL's libcrypto signs
# RS256 tokens (several times faster than Go's crypto/rsa; see
# docs/performance.md). That binary needs glibc and libssl3 at run time,
# hence Debian rather than Alpine; both stages are bookworm, so the
# libcrypto it was built against is the one it loads.
FROM golang:1.26-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -tags openssl -trimpath -ldflags="-s -w" -o /out/idp ./cmd/idp \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/demo-app ./examples/demo-app

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libssl3 ca-certificates wget \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin idp \
 && mkdir -p /run/idp-demo && chown idp /run/idp-demo
COPY --from=build /out/idp /out/demo-app /usr/local/bin/
COPY scripts/docker-demo.sh /usr/local/bin/idp-demo
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD wget -qO- http://127.0.0.1:8080/healthz >/dev/null || exit 1
ENTRYPOINT ["idp"]
CMD ["serve"]
