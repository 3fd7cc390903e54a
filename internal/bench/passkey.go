package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/idp/idp/internal/passkey"
	"github.com/idp/idp/internal/passkey/passkeytest"
)

// passkeyUsers makes n accounts, each with a passkey held by its own
// software authenticator (passkeytest), which keeps a signature counter:
// worker w signs in as account w, so its counter only moves forward.
func (r *runner) passkeyUsers(ctx context.Context, n int) ([]*passkeytest.Authenticator, error) {
	keys := r.in.srv.Passkeys
	if keys == nil {
		return nil, errors.New("bench: passkeys are off on this instance (its issuer's host is an IP address)")
	}
	out := make([]*passkeytest.Authenticator, n)
	for i := range n {
		email := fmt.Sprintf("passkey-%03d@bench.example", i)
		u, err := r.createUser(ctx, email, false)
		if err != nil {
			return nil, err
		}
		p := passkey.Person{ID: u.ID, Email: u.Email, Name: u.Name}
		auth := passkeytest.New(r.in.issuer)
		opts, err := keys.BeginRegistration(ctx, p, "bench")
		if err != nil {
			return nil, fmt.Errorf("bench: passkey for %s: %w", email, err)
		}
		resp, err := auth.Create(opts)
		if err != nil {
			return nil, fmt.Errorf("bench: passkey for %s: %w", email, err)
		}
		if _, err := keys.FinishRegistration(ctx, p, "bench", resp, "", "idp-bench"); err != nil {
			return nil, fmt.Errorf("bench: passkey for %s: %w", email, err)
		}
		out[i] = auth
	}
	return out, nil
}

// passkeySignIn is a new browser signing in to app A with a passkey alone,
// as the sign-in page's script does: the authorization request lands on
// the sign-in page, the script fetches the options, the authenticator
// answers, the answer is posted, and the browser goes back to the
// authorization endpoint and on to the app, which exchanges the code and
// verifies the ID token.
func (r *runner) passkeySignIn(auths []*passkeytest.Authenticator) op {
	return func(ctx context.Context, w int) error {
		b := newBrowser(r.in.issuer, r.tr)
		req := r.appA.authRequest()
		p, err := b.get(ctx, req.url)
		if err != nil {
			return err
		}
		csrf, err := p.form("/login", `autocomplete="username webauthn"`)
		if err != nil {
			return err
		}
		opts, err := b.options(ctx, "/login/passkey/options", url.Values{"csrf_token": {csrf}})
		if err != nil {
			return err
		}
		answer, err := auths[w].Get(opts)
		if err != nil {
			return fmt.Errorf("authenticator: %w", err)
		}
		p, err = b.post(ctx, "/login/passkey", url.Values{"csrf_token": {csrf}, "credential": {string(answer)}})
		if err != nil {
			return err
		}
		code, err := p.code(req)
		if err != nil {
			return err
		}
		_, err = r.appA.exchange(ctx, r.hc, code, req)
		return err
	}
}

// options posts form to an options endpoint and returns its JSON.
func (b *browser) options(ctx context.Context, path string, form url.Values) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !json.Valid(body) {
		return nil, fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return body, nil
}
