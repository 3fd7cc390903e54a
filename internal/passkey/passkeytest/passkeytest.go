// Package passkeytest is a software WebAuthn authenticator together with
// the browser's part of a ceremony, for tests and the benchmark: it reads
// the options a server sends for navigator.credentials.create or .get and
// answers with the JSON a browser would post, made of real attestation and
// assertion objects (CBOR authenticator data, a COSE P-256 key, ES256
// signatures over authenticator data and the client data's hash).
//
// It holds discoverable credentials, verifies the user (UV) unless told
// not to, counts signatures, and can be made to answer wrongly (another
// origin, another RP id, a counter that goes backwards) to test refusals.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/google/uuid"
)

// Authenticator is a software passkey provider. Safe for concurrent use.
type Authenticator struct {
	// Origin is the origin the "browser" reports in its client data: the
	// page's, which a real browser never lets a page choose.
	Origin string
	// AAGUID names the authenticator's model (zero: unnamed).
	AAGUID uuid.UUID
	// Synced makes credentials backup eligible and backed up, as a
	// password manager's or a platform's synced passkeys are.
	Synced bool
	// SkipUserVerification answers without the UV flag: an authenticator
	// that saw the person but did not verify them.
	SkipUserVerification bool
	// NoCounter keeps every signature counter at 0, as synced passkeys do.
	NoCounter bool

	mu    sync.Mutex
	creds []*Credential
}

// Credential is one key the authenticator holds.
type Credential struct {
	ID         []byte
	RPID       string
	UserHandle []byte
	UserName   string
	Key        *ecdsa.PrivateKey
	// Counter is the signature counter; the next assertion sends one more
	// (unless the Authenticator has NoCounter). Tests set it back.
	Counter uint32
}

// New returns an authenticator whose browser reports origin.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin}
}

// Credentials returns the keys held, oldest first.
func (a *Authenticator) Credentials() []*Credential {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.creds)
}

// Tamper makes one answer wrong in a way a phishing page or a broken
// client would.
type Tamper struct {
	Origin string // the client data's origin instead of the Authenticator's
	RPID   string // sign for this RP id instead of the one asked
	// Challenge answers this challenge (base64url) instead of the one sent.
	Challenge string
	// Credential answers with this credential, whatever the options allow.
	Credential *Credential
}

var b64 = base64.RawURLEncoding

// bytesField decodes the base64url strings WebAuthn's JSON carries.
type bytesField []byte

func (b *bytesField) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	raw, err := b64.DecodeString(s)
	if err != nil {
		// Some servers pad; accept that too.
		if raw, err = base64.URLEncoding.DecodeString(s); err != nil {
			return fmt.Errorf("passkeytest: %q is not base64url", s)
		}
	}
	*b = raw
	return nil
}

type descriptor struct {
	ID bytesField `json:"id"`
}

type creationOptions struct {
	PublicKey struct {
		Challenge bytesField `json:"challenge"`
		RP        struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"rp"`
		User struct {
			ID   bytesField `json:"id"`
			Name string     `json:"name"`
		} `json:"user"`
		PubKeyCredParams []struct {
			Alg int `json:"alg"`
		} `json:"pubKeyCredParams"`
		ExcludeCredentials []descriptor `json:"excludeCredentials"`
		Extensions         struct {
			CredProps bool `json:"credProps"`
		} `json:"extensions"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge        bytesField   `json:"challenge"`
		RPID             string       `json:"rpId"`
		AllowCredentials []descriptor `json:"allowCredentials"`
	} `json:"publicKey"`
}

// ErrExcluded is what a browser reports as InvalidStateError: the
// authenticator already holds a credential the options exclude.
var ErrExcluded = errors.New("passkeytest: the authenticator already holds an excluded credential")

// ErrNoCredential is what a browser reports as NotAllowedError when no
// credential fits the request.
var ErrNoCredential = errors.New("passkeytest: no credential for this request")

const es256 = -7

// Create answers navigator.credentials.create(options): it makes a
// discoverable P-256 credential and returns the PublicKeyCredential JSON
// with an attestation object in the "none" format.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	return a.CreateWith(options, Tamper{})
}

// CreateWith is Create, made wrong as t says.
func (a *Authenticator) CreateWith(options []byte, t Tamper) ([]byte, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: creation options: %w", err)
	}
	pk := o.PublicKey
	if !slices.ContainsFunc(pk.PubKeyCredParams, func(p struct {
		Alg int `json:"alg"`
	}) bool {
		return p.Alg == es256
	}) {
		return nil, errors.New("passkeytest: the options do not allow ES256")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ex := range pk.ExcludeCredentials {
		for _, c := range a.creds {
			if slices.Equal(c.ID, ex.ID) {
				return nil, ErrExcluded
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Credential{ID: randomBytes(32), RPID: pk.RP.ID, UserHandle: pk.User.ID, UserName: pk.User.Name, Key: key}
	// A new credential for the same account replaces the old one, as a
	// real authenticator does with resident keys.
	a.creds = slices.DeleteFunc(a.creds, func(old *Credential) bool {
		return old.RPID == c.RPID && slices.Equal(old.UserHandle, c.UserHandle)
	})
	a.creds = append(a.creds, c)

	rpID := pk.RP.ID
	if t.RPID != "" {
		rpID = t.RPID
	}
	cose, err := coseKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	// attestedCredentialData: aaguid (16) | credentialIdLength (2) | credentialId | credentialPublicKey
	attested := append(a.AAGUID[:], byte(len(c.ID)>>8), byte(len(c.ID)))
	attested = append(attested, c.ID...)
	attested = append(attested, cose...)
	authData := a.authData(rpID, flagAT, 0, attested)
	attObj, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": authData})
	if err != nil {
		return nil, err
	}
	clientData, err := a.clientData("webauthn.create", pk.Challenge, t)
	if err != nil {
		return nil, err
	}
	ext := map[string]any{}
	if pk.Extensions.CredProps {
		ext["credProps"] = map[string]bool{"rk": true}
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(c.ID), "rawId": b64.EncodeToString(c.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(clientData),
			"attestationObject": b64.EncodeToString(attObj),
			"transports":        []string{"internal", "hybrid"},
		},
		"clientExtensionResults": ext,
	})
}

// Get answers navigator.credentials.get(options) with an assertion by the
// first credential the options allow (any of the RP's, when they list
// none: a discoverable sign-in).
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	return a.GetWith(options, Tamper{})
}

// GetWith is Get, made wrong as t says.
func (a *Authenticator) GetWith(options []byte, t Tamper) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: request options: %w", err)
	}
	pk := o.PublicKey
	a.mu.Lock()
	defer a.mu.Unlock()
	c := t.Credential
	for _, cand := range a.creds {
		if c != nil {
			break
		}
		if cand.RPID != pk.RPID {
			continue
		}
		if len(pk.AllowCredentials) == 0 || slices.ContainsFunc(pk.AllowCredentials, func(d descriptor) bool {
			return slices.Equal(d.ID, cand.ID)
		}) {
			c = cand
		}
	}
	if c == nil {
		return nil, ErrNoCredential
	}
	if !a.NoCounter {
		c.Counter++
	}
	rpID := pk.RPID
	if t.RPID != "" {
		rpID = t.RPID
	}
	authData := a.authData(rpID, 0, c.Counter, nil)
	clientData, err := a.clientData("webauthn.get", pk.Challenge, t)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(clientData)
	signed := sha256.Sum256(append(slices.Clone(authData), digest[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.Key, signed[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(c.ID), "rawId": b64.EncodeToString(c.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(clientData),
			"authenticatorData": b64.EncodeToString(authData),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(c.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 1 << 0
	flagUV = 1 << 2
	flagBE = 1 << 3
	flagBS = 1 << 4
	flagAT = 1 << 6
)

// authData is rpIdHash (32) | flags (1) | signCount (4, big-endian) | rest.
func (a *Authenticator) authData(rpID string, extra byte, counter uint32, rest []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	flags := byte(flagUP) | extra
	if !a.SkipUserVerification {
		flags |= flagUV
	}
	if a.Synced {
		flags |= flagBE | flagBS
	}
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, rest...)
}

func (a *Authenticator) clientData(typ string, challenge []byte, t Tamper) ([]byte, error) {
	origin := a.Origin
	if t.Origin != "" {
		origin = t.Origin
	}
	ch := b64.EncodeToString(challenge)
	if t.Challenge != "" {
		ch = t.Challenge
	}
	if ch == "" {
		return nil, errors.New("passkeytest: the options have no challenge")
	}
	// The members in the order browsers write them (§5.8.1.1).
	return json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, ch, origin, false})
}

// coseKey encodes a P-256 public key as a COSE_Key (RFC 9053): kty EC2,
// alg ES256, crv P-256, x, y.
func coseKey(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes() // 0x04 | x (32) | y (32)
	if err != nil {
		return nil, err
	}
	return webauthncbor.Marshal(map[int]any{1: 2, 3: es256, -1: 1, -2: raw[1:33], -3: raw[33:65]})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
