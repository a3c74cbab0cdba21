package signature

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Parameters of the hmac scheme, as a source's verification names them.
const (
	ParamHeader     = "header"
	ParamAlgorithm  = "algorithm"
	ParamEncoding   = "encoding"
	ParamPrefix     = "prefix"
	ParamIDHeader   = "id_header"
	ParamTypeHeader = "type_header"
)

// The hmac scheme's defaults.
const (
	defaultHeader    = "X-Signature"
	defaultAlgorithm = "sha256"
	defaultEncoding  = "hex"
)

// HMAC is the scheme of any sender that puts an HMAC of the raw body in a
// header of its own, as Linear, Sentry, Vercel, Typeform, Intercom and many
// others do: each source says which header, hash, encoding and prefix. The
// zero value is hex HMAC-SHA256 in X-Signature. There is no timestamp to
// check; IDHeader, when set, names the sender's delivery id (the dedup key)
// and TypeHeader the event type.
type HMAC struct {
	Header     string // canonical; default X-Signature
	Algorithm  string // sha256 (default), sha1 or sha512
	Encoding   string // hex (default) or base64
	Prefix     string // what comes before the signature, such as "sha256="
	IDHeader   string
	TypeHeader string
}

var (
	_ Scheme       = HMAC{}
	_ Configurable = HMAC{}
	_ Typer        = HMAC{}
)

// Configurable is implemented by a scheme each source configures (hmac).
type Configurable interface {
	Scheme
	// Configure returns the scheme as params set it; its error names the
	// parameter that is wrong and never quotes a secret (params hold none).
	Configure(params map[string]string) (Scheme, error)
	// Params returns the parameters the scheme was configured with, every
	// default filled in, for storage and listings.
	Params() map[string]string
}

// Typer is implemented by a scheme that knows where its sender names the
// event type.
type Typer interface {
	// EventType returns the type the request names, "" when it names none.
	EventType(req Request) string
}

// ForSource returns the scheme called name as a source's params configure
// it. A scheme that takes no parameters refuses any.
func ForSource(name string, params map[string]string) (Scheme, error) {
	s, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown scheme %q", name)
	}
	if c, ok := s.(Configurable); ok {
		return c.Configure(params)
	}
	if len(params) > 0 {
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%s: only the hmac scheme takes it", keys[0])
	}
	return s, nil
}

// Name implements Scheme.
func (HMAC) Name() string { return "hmac" }

func (h HMAC) header() string {
	if h.Header == "" {
		return defaultHeader
	}
	return h.Header
}

func (h HMAC) newHash() func() hash.Hash {
	switch h.Algorithm {
	case "sha1":
		return sha1.New
	case "sha512":
		return sha512.New
	}
	return sha256.New
}

// size is the length of the algorithm's MAC in bytes.
func (h HMAC) size() int {
	switch h.Algorithm {
	case "sha1":
		return sha1.Size
	case "sha512":
		return sha512.Size
	}
	return sha256.Size
}

func (h HMAC) mac(secret string, body []byte) []byte {
	m := hmac.New(h.newHash(), []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

func (h HMAC) encode(b []byte) string {
	if h.Encoding == "base64" {
		return base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}

// Verify implements Scheme.
func (h HMAC) Verify(req Request, secrets []string, _ time.Time, _ time.Duration) error {
	name := h.header()
	v := req.Header.Get(name)
	if v == "" {
		return missing(name)
	}
	enc, ok := strings.CutPrefix(v, h.Prefix)
	if !ok {
		return malformed(name)
	}
	var got []byte
	var err error
	if h.Encoding == "base64" {
		got, err = decodeBase64(enc)
	} else {
		got, err = hex.DecodeString(enc)
	}
	if err != nil || len(got) != h.size() {
		return malformed(name)
	}
	for _, s := range secrets {
		if hmac.Equal(got, h.mac(s, req.Body)) {
			return nil
		}
	}
	return mismatch(name)
}

// Sign implements Scheme.
func (h HMAC) Sign(hd http.Header, body []byte, secret string, _ time.Time) error {
	hd.Set(h.header(), h.Prefix+h.encode(h.mac(secret, body)))
	if h.IDHeader != "" && hd.Get(h.IDHeader) == "" {
		hd.Set(h.IDHeader, randomHex(16))
	}
	return nil
}

// DeliveryID implements Scheme: the IDHeader's value, when the source names one.
func (h HMAC) DeliveryID(req Request) string {
	if h.IDHeader == "" {
		return ""
	}
	return req.Header.Get(h.IDHeader)
}

// EventType implements Typer: the TypeHeader's value, when the source names one.
func (h HMAC) EventType(req Request) string {
	if h.TypeHeader == "" {
		return ""
	}
	return req.Header.Get(h.TypeHeader)
}

// SignsID implements Scheme: the signature covers the body only, not the id.
func (HMAC) SignsID() bool { return false }

// NewSecret implements Scheme.
func (HMAC) NewSecret() string { return randomHex(32) }

// CheckSecret implements Scheme.
func (HMAC) CheckSecret(s string) error { return checkPlainSecret(s) }

// Configure implements Configurable.
func (HMAC) Configure(params map[string]string) (Scheme, error) {
	var h HMAC
	headerName := func(param, v string) (string, error) {
		if v == "" {
			return "", nil
		}
		if !httpguts.ValidHeaderFieldName(v) || len(v) > 256 {
			return "", fmt.Errorf("%s: %.64q is not a header name", param, v)
		}
		return http.CanonicalHeaderKey(v), nil
	}
	for k, v := range params {
		var err error
		switch k {
		case ParamHeader:
			h.Header, err = headerName(k, v)
		case ParamIDHeader:
			h.IDHeader, err = headerName(k, v)
		case ParamTypeHeader:
			h.TypeHeader, err = headerName(k, v)
		case ParamAlgorithm:
			if v != "" && v != "sha256" && v != "sha1" && v != "sha512" {
				err = fmt.Errorf("%s: must be sha256, sha1 or sha512", k)
			}
			h.Algorithm = v
		case ParamEncoding:
			if v != "" && v != "hex" && v != "base64" {
				err = fmt.Errorf("%s: must be hex or base64", k)
			}
			h.Encoding = v
		case ParamPrefix:
			if len(v) > 64 || !httpguts.ValidHeaderFieldValue(v) {
				err = fmt.Errorf("%s: must be at most 64 bytes of header text", k)
			}
			h.Prefix = v
		default:
			err = fmt.Errorf("%s: the hmac scheme takes %s, %s, %s, %s, %s and %s", k,
				ParamHeader, ParamAlgorithm, ParamEncoding, ParamPrefix, ParamIDHeader, ParamTypeHeader)
		}
		if err != nil {
			return nil, err
		}
	}
	h.Header = h.header()
	if h.Algorithm == "" {
		h.Algorithm = defaultAlgorithm
	}
	if h.Encoding == "" {
		h.Encoding = defaultEncoding
	}
	if h.IDHeader == h.Header || h.TypeHeader == h.Header {
		return nil, errors.New(ParamHeader + ": the signature's header cannot also be the id or type header")
	}
	return h, nil
}

// Params implements Configurable. Empty optional parameters are left out.
func (h HMAC) Params() map[string]string {
	p := map[string]string{ParamHeader: h.header(), ParamAlgorithm: defaultAlgorithm, ParamEncoding: defaultEncoding}
	for k, v := range map[string]string{
		ParamAlgorithm: h.Algorithm, ParamEncoding: h.Encoding,
		ParamPrefix: h.Prefix, ParamIDHeader: h.IDHeader, ParamTypeHeader: h.TypeHeader,
	} {
		if v != "" {
			p[k] = v
		}
	}
	return p
}
