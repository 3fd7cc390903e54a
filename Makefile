# The two commands: `make run` (a working provider with demo data, no set-up)
# and `make test` (every test, with -race).
.PHONY: run test build bench

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	go build -o bin/idp ./cmd/idp
