#!/usr/bin/env bash
# Runs every test with the race detector. Uses IDP_TEST_DATABASE_URL when
# set, otherwise a private PostgreSQL cluster in .data/pg (scripts/pg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${IDP_TEST_DATABASE_URL:-}" ]; then
  IDP_TEST_DATABASE_URL=$(scripts/pg.sh)
  export IDP_TEST_DATABASE_URL
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.data/*'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
tags=$(scripts/gotags.sh)
go vet ./...
[ -z "$tags" ] || go vet -tags "$tags" ./...
go test -race -count=1 -timeout 20m -tags "$tags" "$@" ./...
# The signing keys once more in the other build, the one CGO_ENABLED=0
# gives: RS256 by Go's crypto/rsa.
[ -z "$tags" ] || IDP_TEST_REQUIRE_LIBCRYPTO= go test -race -count=1 "$@" ./internal/sso/keys/...
# A few seconds of each fuzz target beyond its seed corpus.
# Counted in runs, not seconds: a wall-clock budget can fail a target
# with "context deadline exceeded" and no crasher when a loaded machine
# starves the fuzzing workers at the deadline (go.dev/issue/75804).
FUZZTIME=${FUZZTIME:-100x} scripts/fuzz.sh
