package secretbox

import (
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key, err := ParseKey(GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	box, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := box.Seal("whsec_topsecret", "src_1")
	if strings.Contains(sealed, "topsecret") {
		t.Fatal("ciphertext contains the plaintext")
	}
	if got, err := box.Open(sealed, "src_1"); err != nil || got != "whsec_topsecret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := box.Open(sealed, "src_2"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("ciphertext opened for another owner: %v", err)
	}
	other, _ := New(make([]byte, KeySize))
	if _, err := other.Open(sealed, "src_1"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("ciphertext opened under another key: %v", err)
	}
	if _, err := box.Open("v1:!!", "src_1"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("garbage opened: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	if _, err := ParseKey("c2hvcnQ="); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := ParseKey("not base64 at all!"); err == nil {
		t.Fatal("non-base64 key accepted")
	}
	if _, err := ParseKey(GenerateKey()); err != nil {
		t.Fatal(err)
	}
}
