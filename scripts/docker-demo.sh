#!/bin/sh
# Entrypoint of the provider in docker-compose.yml: migrate, create the demo
# user and the clients of the two demo apps (their secrets go to a volume the
# apps read), then serve. Mirrors scripts/run.sh.
set -eu
secrets=/run/idp-demo
idp migrate >/dev/null
printf '%s\n' "${DEMO_PASSWORD:-demo-password-1234}" |
  idp users create --email "${DEMO_EMAIL:-demo@example.com}" --name "Demo User" --admin --temporary=false >/dev/null 2>&1 || true
create_app() { # id name port
  url="http://localhost:$3"
  idp clients delete --id "$1" >/dev/null 2>&1 || true
  idp clients create --json --id "$1" --name "$2" \
    --redirect-uri "$url/callback" --post-logout-redirect-uri "$url/" \
    --backchannel-logout-uri "$url/backchannel-logout" --scope openid --scope profile --scope email |
    sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p' > "$secrets/$1.secret.tmp"
  mv "$secrets/$1.secret.tmp" "$secrets/$1.secret"
}
create_app app-a "App A" 9001
create_app app-b "App B" 9002
exec idp serve
