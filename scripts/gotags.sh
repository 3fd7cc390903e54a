#!/usr/bin/env bash
# Prints the Go build tags idp is built and tested with: "openssl" when cgo
# can build against OpenSSL's libcrypto (Debian: gcc and libssl-dev), so
# RS256 tokens are signed by libcrypto (internal/sso/keys/libcrypto),
# several times faster than Go's crypto/rsa on current x86 CPUs. Without
# it, prints nothing and says why on stderr; the build then signs with
# crypto/rsa, which is correct, only slower.
set -euo pipefail
cc=$(go env CC)
if [ "$(go env CGO_ENABLED)" = 1 ] && printf '#include <openssl/evp.h>\n' | ${cc:-cc} -E -x c - >/dev/null 2>&1; then
  echo openssl
else
  echo "note: building without OpenSSL's libcrypto (cgo off, or no C compiler or libssl-dev): RS256 signatures use Go's crypto/rsa" >&2
fi
