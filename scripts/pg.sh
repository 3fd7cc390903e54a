#!/usr/bin/env bash
# Starts (or reuses) a private PostgreSQL cluster in .data/pg and prints its
# URL. Used by `make run` and `make test` when no database URL is given.
# The cluster keeps running afterwards, so the next run starts at once;
# `scripts/pg.sh stop` (make stop) stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.data/pg"
port="${IDP_PG_PORT:-55432}"

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  [ -x "$d/initdb" ] && { bindir=$d; break; }
done
if [ -z "$bindir" ] && command -v initdb >/dev/null; then bindir=$(dirname "$(command -v initdb)"); fi
if [ -z "$bindir" ]; then
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found." >&2
  echo "Install them with: apt-get install postgresql   (Debian package 'postgresql')" >&2
  echo "or set IDP_DATABASE_URL / IDP_TEST_DATABASE_URL to an existing server." >&2
  exit 1
fi

# initdb refuses to run as root: run the cluster as the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
  if [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "stopped the private PostgreSQL in $data"
  else
    echo "the private PostgreSQL in $data is not running"
  fi
  exit 0
fi

mkdir -p "$root/.data"
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data" && chmod o+x "$root/.data"
  as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >"$root/.data/initdb.log" 2>&1 \
    || { cat "$root/.data/initdb.log" >&2; exit 1; }
fi
if ! as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_owner "$bindir/pg_ctl" -D "$data" -w -l "$data/server.log" \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
    || { tail -20 "$data/server.log" >&2; exit 1; }
fi
echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
