#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME (default 3s) after its seed corpus
# (which `go test` already runs in `make test`). A crasher is written to
# the package's testdata/fuzz/<Target>/ and kept there as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
# package:target, one per fuzz function.
targets=(
  ./internal/reqlimit:FuzzLimits_Wrap
  ./internal/sso:FuzzResumeQuery
)
for t in "${targets[@]}"; do
  pkg=${t%%:*} name=${t##*:}
  echo "fuzz $name ($pkg) for $fuzztime"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
done
