package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
)

// Prefix is the prefix of key identifiers.
const Prefix = "key"

// ErrNotFound is a key that does not exist (or was revoked).
var ErrNotFound = errors.New("no such key")

// ErrUnknown is a token that names no key, or not its secret: the caller
// answers 401 without saying which.
var ErrUnknown = errors.New("unknown key")

// Key is a key as listed: never its token, which is shown once, at creation.
type Key struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Scope Scope  `json:"scope"`
	// Sources restricts the key; empty for every source.
	Sources    []string   `json:"sources"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// Principal is who the key acts as.
func (k Key) Principal() Principal {
	return Principal{KeyID: k.ID, Scope: k.Scope, Sources: k.Sources}
}

// TouchEvery is how stale a key's recorded last use may be: a key used
// more often is written at most once in that time.
const TouchEvery = time.Minute

// Store keeps keys in Redis: a hash per key (its name, scope, sources, the
// SHA-256 of its token, when it was made and last used) and an index of
// their ids. Tokens carry 256 random bits, so a plain hash of one is as
// hard to reverse as the token is to guess.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// New returns a store on rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb, now: time.Now} }

const index = "relay:keys"

func keyKey(id string) string { return "relay:key:{" + id + "}" }

// Create makes a key and returns it with its token, which is not kept.
func (s *Store) Create(ctx context.Context, name string, scope Scope, sources []string) (Key, string, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	k := Key{ID: ids.NewAt(Prefix, now), Name: name, Scope: scope, Sources: sources, CreatedAt: now}
	if k.Sources == nil {
		k.Sources = []string{}
	}
	token := k.ID + "." + base64.RawURLEncoding.EncodeToString(secret[:])
	srcs, _ := json.Marshal(k.Sources)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyKey(k.ID), "name", name, "scope", string(scope), "sources", string(srcs),
			"hash", digest(token), "created_at", now.UnixMilli())
		p.ZAdd(ctx, index, redis.Z{Member: k.ID})
		return nil
	})
	if err != nil {
		return Key{}, "", fmt.Errorf("create key: %w", err)
	}
	return k, token, nil
}

// digest is what is kept of a token.
func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IDOf is the key id a token names, if it is shaped like one.
func IDOf(token string) (string, bool) {
	id, _, ok := strings.Cut(token, ".")
	return id, ok && ids.Valid(Prefix, id)
}

// Get returns a key.
func (s *Store) Get(ctx context.Context, id string) (Key, error) {
	m, err := s.rdb.HGetAll(ctx, keyKey(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("get key %s: %w", id, err)
	}
	if len(m) == 0 || m["hash"] == "" {
		return Key{}, ErrNotFound
	}
	return keyFrom(id, m)
}

func keyFrom(id string, m map[string]string) (Key, error) {
	k := Key{ID: id, Name: m["name"], Scope: Scope(m["scope"]), Sources: []string{}}
	if err := json.Unmarshal([]byte(m["sources"]), &k.Sources); err != nil {
		return Key{}, fmt.Errorf("key %s: sources: %w", id, err)
	}
	created, err := strconv.ParseInt(m["created_at"], 10, 64)
	if err != nil {
		return Key{}, fmt.Errorf("key %s: created_at: %w", id, err)
	}
	k.CreatedAt = time.UnixMilli(created).UTC()
	if used, err := strconv.ParseInt(m["last_used_at"], 10, 64); err == nil {
		t := time.UnixMilli(used).UTC()
		k.LastUsedAt = &t
	}
	return k, nil
}

// touchIfExists records a key's use unless it was revoked meanwhile.
// KEYS: key. ARGV: now (ms).
var touchIfExists = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
return 1
`)

// Verify returns the key a token is, recording its use (at most once per
// TouchEvery). A token that names no key, or not with its secret, is
// ErrUnknown.
func (s *Store) Verify(ctx context.Context, token string) (Key, error) {
	id, ok := IDOf(token)
	if !ok {
		return Key{}, ErrUnknown
	}
	m, err := s.rdb.HGetAll(ctx, keyKey(id)).Result()
	if err != nil {
		return Key{}, fmt.Errorf("verify key %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare([]byte(digest(token)), []byte(m["hash"])) != 1 {
		return Key{}, ErrUnknown
	}
	k, err := keyFrom(id, m)
	if err != nil {
		return Key{}, err
	}
	now := s.now()
	if k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= TouchEvery {
		if err := touchIfExists.Run(ctx, s.rdb, []string{keyKey(id)}, now.UnixMilli()).Err(); err != nil {
			return Key{}, fmt.Errorf("record use of key %s: %w", id, err)
		}
		t := now.UTC().Truncate(time.Millisecond)
		k.LastUsedAt = &t
	}
	return k, nil
}

// List lists keys oldest first, limit at a time, after cursor (the last id
// of the previous page); next is "" on the last page.
func (s *Store) List(ctx context.Context, cursor string, limit int) (out []Key, next string, err error) {
	min := "-"
	if cursor != "" {
		min = "(" + cursor
	}
	idl, err := s.rdb.ZRangeByLex(ctx, index, &redis.ZRangeBy{Min: min, Max: "+", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list keys: %w", err)
	}
	if len(idl) > limit {
		idl = idl[:limit]
		next = idl[limit-1]
	}
	cmds := make([]*redis.MapStringStringCmd, len(idl))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range idl {
			cmds[i] = p.HGetAll(ctx, keyKey(id))
		}
		return nil
	}); err != nil {
		return nil, "", fmt.Errorf("list keys: %w", err)
	}
	out = []Key{}
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue // revoked since the index was read
		}
		k, err := keyFrom(idl[i], c.Val())
		if err != nil {
			return nil, "", err
		}
		out = append(out, k)
	}
	return out, next, nil
}

// Revoke deletes a key: its token stops working at once, and so do the
// console sessions signed in with it.
func (s *Store) Revoke(ctx context.Context, id string) error {
	var del *redis.IntCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, keyKey(id))
		p.ZRem(ctx, index, id)
		return nil
	}); err != nil {
		return fmt.Errorf("revoke key %s: %w", id, err)
	}
	if del.Val() == 0 {
		return ErrNotFound
	}
	return nil
}
