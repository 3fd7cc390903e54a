package ops

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// MinScrapeTokenLen is the shortest scrape token accepted. A token this
// long, drawn at random, cannot be guessed, which is why the endpoint it
// guards needs no rate limit of its own.
const MinScrapeTokenLen = 32

// RequireBearer serves h only to requests that present token as an RFC 6750
// bearer token (Prometheus: authorization.credentials_file); the rest get
// 401 and a WWW-Authenticate challenge. Only the token's digest is kept,
// and the comparison takes the same time wherever a guess goes wrong.
func RequireBearer(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		digest := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(digest[:], want[:]) != 1 {
			challenge := `Bearer realm="metrics"`
			if ok {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "401 unauthorized: this endpoint needs the scrape token as a bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerToken reads "Bearer <token>"; the scheme is case-insensitive
// (RFC 9110 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}
