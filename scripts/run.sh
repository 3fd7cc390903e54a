#!/usr/bin/env bash
# Runs the provider with no set-up: a private PostgreSQL (unless
# IDP_DATABASE_URL is set), a generated server secret, migrations, a demo
# user and a demo client, then `idp serve` alongside two demo apps (App A
# on :9001, App B on :9002) that sign in through it, and a mail catcher
# (:8025) that shows the mail it sends. They stop when the provider does.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data bin

if [ -z "${IDP_DATABASE_URL:-}" ]; then
  private_pg=1
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
# The demo apps' back-channel logout URIs are on localhost, which the
# provider refuses to post to unless told (read by idp serve and idp clients create).
export IDP_ALLOW_PRIVATE_BACKCHANNEL="${IDP_ALLOW_PRIVATE_BACKCHANNEL:-true}"
export IDP_ISSUER="${IDP_ISSUER:-http://localhost:${IDP_ADDR##*:}}"
# Mail (password reset) goes to the demo's mail catcher unless an SMTP
# server is given; tls=none is allowed because it is on loopback.
if [ -z "${IDP_SMTP_URL:-}" ]; then
  catcher=1
  export IDP_SMTP_URL="smtp://127.0.0.1:1025?tls=none"
  export IDP_MAIL_FROM="${IDP_MAIL_FROM:-Demo Login <login@example.com>}"
fi

go build -tags "$(scripts/gotags.sh)" -o bin/idp ./cmd/idp
go build -o bin/demo-app ./examples/demo-app
go build -o bin/mail-catcher ./examples/mail-catcher
bin/idp migrate >/dev/null

demo_email=demo@example.com
demo_password=demo-password-1234
printf '%s\n' "$demo_password" | bin/idp users create --email "$demo_email" --name "Demo User" --admin --temporary=false >/dev/null 2>&1 || true

# The demo client is re-created on every start so its secret can be shown.
bin/idp clients delete --id demo >/dev/null 2>&1 || true
secret=$(bin/idp clients create --json --id demo --name "Demo app" \
  --redirect-uri http://localhost:9000/callback \
  --post-logout-redirect-uri http://localhost:9000/ \
  --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
  --scope openid --scope profile --scope email --scope offline_access | sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p')

# The demo apps, each its own client with a back-channel logout URI; also
# re-created on every start, their secrets passed to the apps.
demo_client() { # id name base-url → prints the new secret
  bin/idp clients delete --id "$1" >/dev/null 2>&1 || true
  bin/idp clients create --json --id "$1" --name "$2" \
    --redirect-uri "$3/callback" --post-logout-redirect-uri "$3/" \
    --backchannel-logout-uri "$3/backchannel-logout" \
    --grant-type authorization_code --scope openid --scope profile --scope email \
    | sed -n 's/.*"client_secret": *"\([^"]*\)".*/\1/p'
}
app_a_url=http://localhost:9001
app_b_url=http://localhost:9002
app_a_secret=$(demo_client app-a "App A" "$app_a_url")
app_b_secret=$(demo_client app-b "App B" "$app_b_url")

cat <<INFO

  idp is starting at $IDP_ISSUER
  discovery:     $IDP_ISSUER/.well-known/openid-configuration
  demo user:     $demo_email / $demo_password   (an administrator)
  demo client:   id "demo", secret "$secret"
                 redirect URI http://localhost:9000/callback
  try it:        $IDP_ISSUER/oauth2/auth?client_id=demo&response_type=code&scope=openid%20email&redirect_uri=http%3A%2F%2Flocalhost%3A9000%2Fcallback&state=0123456789&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256

  demo apps:     App A  $app_a_url   (client app-a)
                 App B  $app_b_url   (client app-b)
                 Sign in at one, then open the other: no password is asked.
                 Sign out at one: the other follows (back-channel logout).
$( [ -n "${catcher:-}" ] && printf '\n  mail:          http://localhost:8025   (the demo mail catcher: password reset links land here)\n')
$( [ -n "${private_pg:-}" ] && printf '\n  database:      the private PostgreSQL in .data/pg; it keeps running after\n                 this stops (the next start is quicker): make stop stops it.\n')
INFO

# Every process started here is stopped, by its pid, when this script ends.
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
start_app() { # id name url port secret
  DEMO_CLIENT_SECRET=$5 bin/demo-app -issuer "$IDP_ISSUER" -client-id "$1" -name "$2" \
    -public-url "$3" -addr "127.0.0.1:$4" &
  pids+=("$!")
}
if [ -n "${catcher:-}" ]; then
  bin/mail-catcher -smtp-addr 127.0.0.1:1025 -http-addr 127.0.0.1:8025 &
  pids+=("$!")
fi
start_app app-a "App A" "$app_a_url" 9001 "$app_a_secret"
start_app app-b "App B" "$app_b_url" 9002 "$app_b_secret"

bin/idp serve &
idp_pid=$!
pids+=("$idp_pid")
trap 'kill -TERM "$idp_pid" 2>/dev/null || true' INT TERM
status=0
# A signal interrupts wait; wait again while idp shuts down gracefully.
while kill -0 "$idp_pid" 2>/dev/null; do
  wait "$idp_pid" || status=$?
done
exit "$status"
