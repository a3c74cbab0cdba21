// Package secretbox encrypts secrets at rest with AES-256-GCM under
// RELAY_SECRET_KEY. Each ciphertext is bound to the id of the record that
// holds it (as GCM additional data), so a ciphertext copied onto another
// source or subscription does not decrypt.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const version = "v1:"

// ErrDecrypt means a ciphertext is corrupt, was made under another key, or
// belongs to another record. It never says which.
var ErrDecrypt = errors.New("secret cannot be decrypted with RELAY_SECRET_KEY")

// Box seals and opens secrets with one key.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &Box{aead: aead}, nil
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or not).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (make one with: openssl rand -base64 32)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64 (make one with: openssl rand -base64 32)")
}

// GenerateKey returns a new random key, base64 encoded.
func GenerateKey() string {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("secretbox: crypto/rand: %v", err))
	}
	return base64.StdEncoding.EncodeToString(k)
}

// Seal encrypts plaintext for the record named owner.
func (b *Box) Seal(plaintext, owner string) string {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("secretbox: crypto/rand: %v", err))
	}
	ct := b.aead.Seal(nonce, nonce, []byte(plaintext), []byte(owner))
	return version + base64.RawStdEncoding.EncodeToString(ct)
}

// Open decrypts a sealed secret of the record named owner.
func (b *Box) Open(sealed, owner string) (string, error) {
	rest, ok := strings.CutPrefix(sealed, version)
	if !ok {
		return "", ErrDecrypt
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.aead.NonceSize() {
		return "", ErrDecrypt
	}
	n := b.aead.NonceSize()
	pt, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(owner))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(pt), nil
}
