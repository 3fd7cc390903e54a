# syntax=docker/dockerfile:1
# Multi-stage build: a static Go binary on a small base, run as a non-root
# user. The image holds `idp`, the demo relying party, and the demo
# entrypoint used by docker-compose.yml.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/idp ./cmd/idp \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/demo-app ./examples/demo-app

FROM alpine:3.20
RUN adduser -D -H -u 10001 idp && mkdir -p /run/idp-demo && chown idp /run/idp-demo
COPY --from=build /out/idp /out/demo-app /usr/local/bin/
COPY scripts/docker-demo.sh /usr/local/bin/idp-demo
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD wget -qO- http://127.0.0.1:8080/healthz >/dev/null || exit 1
ENTRYPOINT ["idp"]
CMD ["serve"]
