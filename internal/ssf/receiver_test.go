package ssf_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/event"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/parser"
	"github.com/sgnl-ai/caep.dev/secevent/pkg/token"

	"github.com/idp/idp/internal/ssf"
)

// The independent receiver: SETs are parsed and verified by
// github.com/sgnl-ai/caep.dev/secevent against the provider's JWKS, as a
// receiver written by others would. The library knows CAEP and SSF events;
// RISC's are registered here as plain JSON events.

type riscEvent struct {
	event.BaseEvent
	fields map[string]any
}

func (e *riscEvent) Validate() error              { return nil }
func (e *riscEvent) Payload() any                 { return e.fields }
func (e *riscEvent) MarshalJSON() ([]byte, error) { return json.Marshal(e.fields) }
func (e *riscEvent) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &e.fields) }

func init() {
	for _, typ := range []string{ssf.EventAccountDisabled, ssf.EventAccountEnabled, ssf.EventAccountPurged,
		ssf.EventAccountCredentialChangeRequired} {
		event.RegisterEventParser(event.EventType(typ), func(b []byte) (event.Event, error) {
			e := &riscEvent{}
			e.SetType(event.EventType(typ))
			if err := json.Unmarshal(b, &e.fields); err != nil {
				return nil, err
			}
			return e, nil
		})
	}
}

// verifySET checks token as a receiver must: the typ header (which the
// library does not look at), then signature, issuer and audience through
// the library against the JWKS at jwksURL.
func verifySET(t *testing.T, raw, jwksURL, issuer, audience string) *token.SecEvent {
	t.Helper()
	set, err := parseSET(raw, jwksURL, issuer, audience)
	if err != nil {
		t.Fatalf("SET does not verify: %v", err)
	}
	return set
}

func parseSET(raw, jwksURL, issuer, audience string) (*token.SecEvent, error) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return nil, err
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != ssf.TokenType {
		return nil, fmt.Errorf("typ = %q, want %q", typ, ssf.TokenType)
	}
	p := parser.NewParser(parser.WithJWKSURL(jwksURL), parser.WithExpectedIssuer(issuer),
		parser.WithExpectedAudience(audience))
	return p.ParseSecEvent(raw)
}

// claims decodes a verified SET's claims for the members the library does
// not expose (an event's own fields).
func claims(t *testing.T, raw string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// verifyJOSE verifies raw with go-jose against the JWKS at jwksURL and
// checks typ, iss and aud; it returns the claims.
func verifyJOSE(t *testing.T, raw, jwksURL, issuer, audience string) map[string]any {
	t.Helper()
	resp, err := http.Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != ssf.TokenType {
		t.Fatalf("typ = %q, want %q", typ, ssf.TokenType)
	}
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q names %d keys of the JWKS", h.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	// aud is a string or an array of one (RFC 7519 §4.1.3).
	aud, _ := c["aud"].([]any)
	if s, ok := c["aud"].(string); ok {
		aud = []any{s}
	}
	if c["iss"] != issuer || len(aud) != 1 || aud[0] != audience {
		t.Fatalf("iss %v aud %v, want %s [%s]", c["iss"], c["aud"], issuer, audience)
	}
	return c
}

func firstKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return ""
}
