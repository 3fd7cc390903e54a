#!/usr/bin/env bash
# Runs each fuzz target for FUZZTIME (a duration, or a count of runs such
# as 100x; default 3s) after its seed corpus
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
# The corpus fuzzing grows: for the same reason it grows on every run, so
# it is kept only when FUZZCACHEDIR names a place (`make fuzz` uses go's
# own, under GOCACHE); otherwise each run starts from the seeds and the
# crashers in testdata, and takes the same time every time.
cachedir=${FUZZCACHEDIR:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -n "$cachedir" ] || cachedir=$work/cache
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
  ./internal/ssf:FuzzStreams_Bodies
  ./internal/registration:FuzzHandler_Bodies
  ./internal/ssf/receiver:FuzzReceiver_Push
  ./internal/demoapp:FuzzApp_BackchannelLogout
)
# One instrumented test binary per package, built together (go test
# -fuzz would link one per target, which took longer than the fuzzing).
pkgs=()
for t in "${targets[@]}"; do
  p=${t%%:*}
  [[ " ${pkgs[*]} " == *" $p "* ]] || pkgs+=("$p")
done
builds=()
for p in "${pkgs[@]}"; do
  # -fuzz builds the package with coverage instrumentation.
  go test -c -fuzz . -o "$work/${p//\//_}.test" "$p" &
  builds+=($!)
done
for b in "${builds[@]}"; do wait "$b"; done
for t in "${targets[@]}"; do
  pkg=${t%%:*} name=${t##*:}
  importpath=$(go list "$pkg")
  echo "fuzz $name ($pkg) for $fuzztime"
  # Run in the package's directory, as go test does, so testdata is found.
  (cd "$pkg" && "$work/${pkg//\//_}.test" -test.run '^$' -test.fuzz "^${name}\$" -test.fuzztime "$fuzztime" \
    -test.fuzzminimizetime "$minimize" -test.fuzzcachedir "$cachedir/$importpath")
done
