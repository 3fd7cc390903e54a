// Package bench measures the provider: it starts an instance in-process on a
// fresh database, seeds the users and clients it needs, drives the
// endpoints over loopback HTTP with concurrent workers (as relying parties
// and browsers would, with go-oidc and x/oauth2), and reports throughput,
// latency and errors per scenario next to floors measured in the same run:
// what the hardware and PostgreSQL allow at best for the same unit of work.
//
// It also counts the database round trips of each request, with a pgx
// tracer on the instance's pool and a middleware that gives every request
// its own counter, and samples the process's resident memory.
//
// cmd/idp-bench is its command line; docs/performance.md records a run.
package bench
