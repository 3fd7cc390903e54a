package sessions

import "testing"

func TestACRSatisfies(t *testing.T) {
	cases := []struct {
		have, want string
		ok         bool
	}{
		{ACRPassword, ACRPassword, true},
		{ACRPassword, ACRMFA, false},
		{ACRMFA, ACRMFA, true},
		{ACRMFA, ACRPhishingResistant, false},
		{ACRPhishingResistant, ACRMFA, true},
		{ACRPhishingResistant, ACRPhishingResistant, true},
		{ACRPhishingResistant, "urn:other:acr", false},
		{"", ACRPassword, false},
	}
	for _, tc := range cases {
		if got := ACRSatisfies(tc.have, tc.want); got != tc.ok {
			t.Errorf("ACRSatisfies(%q, %q) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
	if !(Session{ACR: ACRPhishingResistant}).MultiFactor() || (Session{ACR: ACRMFA}).PhishingResistant() {
		t.Error("a passkey session is not multi-factor, or a two-factor one counts as phishing-resistant")
	}
}
