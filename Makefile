# The two commands: `make run` (a working provider with demo data, no set-up)
# and `make test` (every test, with -race).
.PHONY: run test build bench stop fuzz

run:
	scripts/run.sh

test:
	scripts/test.sh

# Stops the private PostgreSQL that `make run` and `make test` start (and
# leave running, so the next run is quick) when no database URL is given.
stop:
	scripts/pg.sh stop

# Built with OpenSSL's libcrypto for RS256 signatures when cgo can find it
# (scripts/gotags.sh); `CGO_ENABLED=0 make build` gives a static binary that
# signs with Go's crypto/rsa.
build:
	go build -tags "$$(scripts/gotags.sh)" -o bin/idp ./cmd/idp

# The benchmark (docs/performance.md): a fresh database on
# IDP_BENCH_DATABASE_URL (else the private cluster of scripts/pg.sh), an
# in-process provider, every scenario against its floor, PASS/FAIL per
# target. Narrow it with e.g. BENCH_FLAGS="--only refresh --duration 3s".
bench:
	go run -tags "$$(scripts/gotags.sh)" ./cmd/idp-bench $(BENCH_FLAGS)

# Each fuzz target (scripts/fuzz.sh) for FUZZTIME (default 30s), e.g.
# `make fuzz FUZZTIME=5m`, growing go's fuzz corpus under GOCACHE. Their
# seed corpora also run in `make test`, then 3 s of each from the seeds.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) FUZZCACHEDIR="$$(go env GOCACHE)/fuzz" scripts/fuzz.sh
