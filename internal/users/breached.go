package users

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PwnedPasswordsURL is the Pwned Passwords range API of Have I Been Pwned.
const PwnedPasswordsURL = "https://api.pwnedpasswords.com"

// BreachedPasswords asks a Pwned Passwords range API (k-anonymity) whether
// a password has appeared in a data breach: only the first 5 hex digits of
// its SHA-1 leave the provider, and the answer lists every suffix under
// that prefix (padded with decoys), so the service never learns which
// password was asked about.
type BreachedPasswords struct {
	// URL is the API's base, e.g. PwnedPasswordsURL or a mirror run by the
	// operator; requests go to URL + "/range/" + prefix.
	URL string
	// HTTP sends the requests; nil means a client with a 3-second timeout.
	HTTP *http.Client
}

// ErrBreachCheck means the service could not be asked; the caller decides
// whether a password is accepted without the check.
var ErrBreachCheck = errors.New("users: breached-password check unavailable")

// Count returns how many times password appears in the breaches the
// service knows of (0: none).
func (b *BreachedPasswords) Count(ctx context.Context, password string) (int, error) {
	sum := sha1.Sum([]byte(password)) // the range API's scheme, not a password hash
	digest := strings.ToUpper(hex.EncodeToString(sum[:]))
	prefix, suffix := digest[:5], digest[5:]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(b.URL, "/")+"/range/"+url.PathEscape(prefix), nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBreachCheck, err)
	}
	// Padding makes every answer about the same size, so its length does
	// not hint at the prefix either.
	req.Header.Set("Add-Padding", "true")
	req.Header.Set("User-Agent", "idp")
	hc := b.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 3 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBreachCheck, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%w: status %d", ErrBreachCheck, resp.StatusCode)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		s, n, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || !strings.EqualFold(s, suffix) {
			continue
		}
		count, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("%w: malformed count %q", ErrBreachCheck, n)
		}
		return count, nil // padding entries have count 0
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBreachCheck, err)
	}
	return 0, nil
}
