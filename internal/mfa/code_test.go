package mfa

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"
)

func TestParseCode(t *testing.T) {
	tests := []struct {
		name, in string
		kind     kind
		want     string
	}{
		{"six digits", "123456", kindTOTP, "123456"},
		{"grouped with a space", "123 456", kindTOTP, "123456"},
		{"grouped with a dash", "123-456", kindTOTP, "123456"},
		{"surrounding whitespace", "\t123456\n", kindTOTP, "123456"},
		{"recovery code", "7k3qm-x9d2f", kindRecovery, "7k3qmx9d2f"},
		{"recovery upper case", "7K3QM-X9D2F", kindRecovery, "7k3qmx9d2f"},
		{"recovery o i l", "oilab-cdefg", kindRecovery, "011ab" + "cdefg"},
		{"ten digits is a recovery code", "1234567890", kindRecovery, "1234567890"},
		{"empty", "", 0, ""},
		{"only separators", " - - ", 0, ""},
		{"five digits", "12345", 0, ""},
		{"seven digits", "1234567", 0, ""},
		{"letters", "abcdef", 0, ""},
		{"non-ASCII digits", "١٢٣٤٥٦", 0, ""},
		{"u is not in the alphabet", "uuuuu-uuuuu", 0, ""},
		{"punctuation", "!!!!!-!!!!!", 0, ""},
		{"eleven characters", "abcde-fghjkm", 0, ""},
		{"very long", strings.Repeat("1", 100), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, got, err := parseCode(tt.in)
			if tt.kind == 0 {
				if !errors.Is(err, ErrMalformedCode) {
					t.Fatalf("parseCode(%q) = %v, %q, %v; want ErrMalformedCode", tt.in, k, got, err)
				}
				return
			}
			if err != nil || k != tt.kind || got != tt.want {
				t.Fatalf("parseCode(%q) = %v, %q, %v; want %v, %q", tt.in, k, got, err, tt.kind, tt.want)
			}
		})
	}
}

func TestNewRecoveryCode(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newRecoveryCode()
		canon, ok := canonicalRecovery(c)
		if !ok || canon != c {
			t.Fatalf("generated %q is not canonical", c)
		}
		if seen[c] {
			t.Fatalf("repeated code %q in 1000 draws", c)
		}
		seen[c] = true
	}
	if len(recoveryAlphabet) != 32 {
		t.Fatalf("alphabet has %d symbols; the generator needs exactly 32", len(recoveryAlphabet))
	}
}

func TestQRPNG(t *testing.T) {
	const uri = "otpauth://totp/idp%20test:alice@example.com?algorithm=SHA1&digits=6&issuer=idp%20test&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	b, err := qrPNG(uri)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	if r.Dx() != r.Dy() || r.Dx() < 200 || r.Dx() > 400 {
		t.Fatalf("image is %dx%d, want a square of 200-400 px", r.Dx(), r.Dy())
	}
	// Walk the diagonal into the top-left finder pattern: the quiet zone
	// (4 white modules), then the finder's rings, dark-light-dark-dark-
	// dark-light-dark. The first dark pixel gives the module size.
	var first int
	for first < r.Dx() && !dark(img.At(first, first)) {
		first++
	}
	scale := first / qrQuietZone
	if scale < qrMinScale || first%qrQuietZone != 0 || r.Dx()%scale != 0 {
		t.Fatalf("first dark pixel at %d in a %d px image: no whole-module quiet zone", first, r.Dx())
	}
	if modules := r.Dx()/scale - 2*qrQuietZone; (modules-17)%4 != 0 {
		t.Fatalf("%d modules a side is not a QR symbol size", modules)
	}
	for i, want := range []bool{true, false, true, true, true, false, true} {
		for d := 0; d < scale; d++ {
			p := first + i*scale + d
			if dark(img.At(p, p)) != want {
				t.Fatalf("finder module %d (pixel %d) dark = %v, want %v", i, p, !want, want)
			}
		}
	}
	for i := 0; i < r.Dx(); i++ { // the whole border is white
		for _, p := range [][2]int{{i, 0}, {0, i}, {i, r.Dy() - 1}, {r.Dx() - 1, i}, {i, first - 1}, {first - 1, i}} {
			if dark(img.At(p[0], p[1])) {
				t.Fatalf("pixel %v in the quiet zone is dark", p)
			}
		}
	}
	if len(b) > 4096 {
		t.Errorf("PNG is %d bytes; a two-colour QR should be small", len(b))
	}
}
