package secrets

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestBox_SealOpen(t *testing.T) {
	old := strings.Repeat("o", 32)
	cur := strings.Repeat("n", 32)
	boxOld, err := New(old, "t")
	if err != nil {
		t.Fatal(err)
	}
	sealed := boxOld.Seal([]byte("secret"), []byte("row1"))

	t.Run("rotation keeps old values readable", func(t *testing.T) {
		box, _ := New(cur+","+old, "t")
		got, err := box.Open(sealed, []byte("row1"))
		if err != nil || !bytes.Equal(got, []byte("secret")) {
			t.Fatalf("Open = %q, %v", got, err)
		}
		if !box.NeedsRotation(sealed) {
			t.Fatal("value sealed by the old key should need rotation")
		}
	})
	t.Run("wrong aad", func(t *testing.T) {
		if _, err := boxOld.Open(sealed, []byte("row2")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		box, _ := New(cur, "t")
		if _, err := box.Open(sealed, []byte("row1")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
	t.Run("other purpose", func(t *testing.T) {
		box, _ := New(old, "other")
		if _, err := box.Open(sealed, []byte("row1")); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	})
	t.Run("short secret refused", func(t *testing.T) {
		if _, err := New("short", "t"); err == nil {
			t.Fatal("want error for short secret")
		}
	})
}
