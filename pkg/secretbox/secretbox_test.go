package secretbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
)

func TestSealOpen(t *testing.T) {
	key, err := ParseKey(GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	box, err := New(key, nil)
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
	other, _ := New(make([]byte, KeySize), nil)
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

// During a key rotation a box opens what either key sealed, seals with the
// new one, and rewraps only what the previous key sealed.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := make([]byte, KeySize), make([]byte, KeySize)
	newKey[0] = 1
	before, _ := New(oldKey, nil)
	during, err := New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := New(newKey, nil)

	sealedOld := before.Seal("whsec_old", "src_1")
	if pt, err := during.Open(sealedOld, "src_1"); err != nil || pt != "whsec_old" {
		t.Fatalf("opening a secret sealed under the previous key: %q %v", pt, err)
	}
	if _, err := after.Open(sealedOld, "src_1"); err == nil {
		t.Fatal("without the previous key, its secrets must not open")
	}
	rewrapped, changed, err := during.Rewrap(sealedOld, "src_1")
	if err != nil || !changed {
		t.Fatalf("Rewrap of an old secret: changed %v, %v", changed, err)
	}
	if pt, err := after.Open(rewrapped, "src_1"); err != nil || pt != "whsec_old" {
		t.Fatalf("the rewrapped secret under the new key alone: %q %v", pt, err)
	}
	sealedNew := during.Seal("whsec_new", "src_1")
	if pt, err := after.Open(sealedNew, "src_1"); err != nil || pt != "whsec_new" {
		t.Fatalf("a box with a previous key must seal with the current one: %q %v", pt, err)
	}
	if out, changed, err := during.Rewrap(sealedNew, "src_1"); err != nil || changed || out != sealedNew {
		t.Fatalf("Rewrap of a current secret: changed %v, %v", changed, err)
	}
	stranger, _ := New(append(make([]byte, KeySize-1), 9), nil)
	if _, _, err := during.Rewrap(stranger.Seal("x", "src_1"), "src_1"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Rewrap of a secret neither key opens: %v, want ErrDecrypt", err)
	}
	if _, _, err := during.Rewrap(sealedOld, "src_2"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Rewrap under another owner: %v, want ErrDecrypt", err)
	}
}

func TestLoadKeys(t *testing.T) {
	a, b := GenerateKey(), GenerateKey()
	r := envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": a, "RELAY_SECRET_KEY_PREVIOUS": b})
	key, prev := LoadKeys(r)
	if r.Err() != nil || len(key) != KeySize || len(prev) != KeySize {
		t.Fatalf("two keys: %d %d %v", len(key), len(prev), r.Err())
	}
	r = envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": a, "RELAY_SECRET_KEY_PREVIOUS": a})
	if LoadKeys(r); r.Err() == nil || !strings.Contains(r.Err().Error(), "RELAY_SECRET_KEY_PREVIOUS: is the same key") {
		t.Fatalf("the same key twice: %v", r.Err())
	}
	r = envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": a, "RELAY_SECRET_KEY_PREVIOUS": "not-a-key"})
	if LoadKeys(r); r.Err() == nil || !strings.Contains(r.Err().Error(), "RELAY_SECRET_KEY_PREVIOUS") || strings.Contains(r.Err().Error(), "not-a-key") {
		t.Fatalf("a bad previous key: %v", r.Err())
	}
	r = envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": a, "RELAY_SECRET_KEY_PREVIOUS": ""})
	if _, prev := LoadKeys(r); r.Err() != nil || prev != nil {
		t.Fatalf("an empty previous key is none: %v %v", prev, r.Err())
	}
}
