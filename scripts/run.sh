#!/usr/bin/env bash
# Runs the provider with no set-up: a private PostgreSQL (unless
# IDP_DATABASE_URL is set), a generated server secret, migrations, a demo
# user and a demo client, then `idp serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data bin

if [ -z "${IDP_DATABASE_URL:-}" ]; then
  base=$(scripts/pg.sh)
  psql "$base" -tAc "SELECT 1 FROM pg_database WHERE datname = 'idp'" | grep -q 1 \
    || psql "$base" -qc "CREATE DATABASE idp" >/dev/null
  export IDP_DATABASE_URL="${base%/postgres*}/idp?sslmode=disable"
fi
if [ -z "${IDP_SECRET:-}" ]; then
  [ -s .data/secret ] || head -c 48 /dev/urandom | base64 | tr -d '\n' > .data/secret
  IDP_SECRET=$(cat .data/secret)
  export IDP_SECRET
fi
export IDP_ADDR="${IDP_ADDR:-127.0.0.1:8080}"
export IDP_ISSUER="${IDP_ISSUER:-http://localhost:${IDP_ADDR##*:}}"

go build -o bin/idp ./cmd/idp
bin/idp migrate >/dev/null

demo_email=demo@example.com
demo_password=demo-password-1234
printf '%s\n' "$demo_password" | bin/idp users create --email "$demo_email" --name "Demo User" --admin >/dev/null 2>&1 || true

# The demo client is re-created on every start so its secret can be shown.
bin/idp clients delete --id demo >/dev/null 2>&1 || true
secret=$(bin/idp clients create --json --id demo --name "Demo app" \
  --redirect-uri http://localhost:9000/callback \
  --post-logout-redirect-uri http://localhost:9000/ \
  --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
  --scope openid --scope profile --scope email --scope offline_access | sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p')

cat <<INFO

  idp is starting at $IDP_ISSUER
  discovery:     $IDP_ISSUER/.well-known/openid-configuration
  demo user:     $demo_email / $demo_password   (an administrator)
  demo client:   id "demo", secret "$secret"
                 redirect URI http://localhost:9000/callback
  try it:        $IDP_ISSUER/oauth2/auth?client_id=demo&response_type=code&scope=openid%20email&redirect_uri=http%3A%2F%2Flocalhost%3A9000%2Fcallback&state=0123456789&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256

INFO
exec bin/idp serve
