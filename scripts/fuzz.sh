#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME (default 3s) after its seed corpus
# (which `go test` already runs in `make test`). A crasher is written to
# the package's testdata/fuzz/<Target>/ and kept there as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
# No minimizing: the targets that drive a whole provider see new coverage
# on almost every input (its background goroutines, random tokens), and
# minimizing each would take all the time. A crasher is kept as found;
# FUZZMINIMIZETIME=30s brings minimizing back.
minimize=${FUZZMINIMIZETIME:-0}
# package:target, one per fuzz function.
targets=(
  ./internal/reqlimit:FuzzLimits_Wrap
  ./internal/sso:FuzzResumeQuery
  ./internal/sso:FuzzConsent
  ./internal/login:FuzzHandler_PasswordSubmit
  ./internal/login:FuzzHandler_TOTPSubmit
  ./internal/login:FuzzHandler_FlowCookie
  ./internal/sessions:FuzzManager_Current
  ./internal/account:FuzzHandler_Forms
  ./internal/admin:FuzzAPI_Bodies
  ./internal/demoapp:FuzzApp_BackchannelLogout
)
for t in "${targets[@]}"; do
  pkg=${t%%:*} name=${t##*:}
  echo "fuzz $name ($pkg) for $fuzztime"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"
done
