package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// errNoSession is a cookie that names no live session: never issued,
// expired, signed out, or forged.
var errNoSession = errors.New("no such session")

// session is a signed-in browser. It holds no key: KeyID names the API key
// it signed in with (read again on every request, so a revoked key ends its
// sessions), or Admin the SHA-256 of the RELAY_ADMIN_TOKEN it signed in
// with (checked against the configured tokens on every request, so a
// rotated token ends them).
type session struct {
	KeyID string
	Admin string
	// CSRF is the token every form of the session carries.
	CSRF string
}

// sessions keeps sessions in Redis under the SHA-256 of their cookie, each
// expiring ttl after sign-in.
type sessions struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return "relay:console:session:" + hex.EncodeToString(sum[:])
}

// random is n random bytes, base64url.
func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("console: crypto/rand: %v", err)) // does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its cookie's value.
func (s *sessions) create(ctx context.Context, sess session) (string, error) {
	cookie := random(32)
	k := sessionKey(cookie)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "key_id", sess.KeyID, "admin", sess.Admin, "csrf", sess.CSRF)
		p.PExpire(ctx, k, s.ttl)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("start session: %w", err)
	}
	return cookie, nil
}

// get reads the session a cookie names.
func (s *sessions) get(ctx context.Context, cookie string) (session, error) {
	if cookie == "" {
		return session{}, errNoSession
	}
	m, err := s.rdb.HGetAll(ctx, sessionKey(cookie)).Result()
	if err != nil {
		return session{}, fmt.Errorf("read session: %w", err)
	}
	if m["csrf"] == "" {
		return session{}, errNoSession
	}
	return session{KeyID: m["key_id"], Admin: m["admin"], CSRF: m["csrf"]}, nil
}

// flashIfLive sets a session's message unless the session has ended
// meanwhile: a plain HSET would leave an ended session a key with no TTL.
// KEYS: session. ARGV: message.
var flashIfLive = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'flash', ARGV[1])
return 1
`)

// flash keeps a message for the session's next page.
func (s *sessions) flash(ctx context.Context, cookie, msg string) error {
	return flashIfLive.Run(ctx, s.rdb, []string{sessionKey(cookie)}, msg).Err()
}

// takeFlash returns the session's message, once.
func (s *sessions) takeFlash(ctx context.Context, cookie string) (string, error) {
	var get *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGet(ctx, sessionKey(cookie), "flash")
		p.HDel(ctx, sessionKey(cookie), "flash")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	return get.Val(), nil
}

// end signs a session out.
func (s *sessions) end(ctx context.Context, cookie string) error {
	return s.rdb.Del(ctx, sessionKey(cookie)).Err()
}
