package signature

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// slackBody is the example request body of Slack's "Verifying requests from
// Slack" guide.
const slackBody = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"

type golden struct {
	scheme  string
	secret  string
	body    string
	headers map[string]string
	now     time.Time
	// delivery is the DeliveryID the scheme should extract.
	delivery string
	// params configure the hmac scheme.
	params map[string]string
}

// goldenVectors are signed requests whose signatures come from outside this
// code: the providers' own documentation where it publishes an example, else
// computed independently with Python's hmac module from the documented
// algorithm (noted per vector).
var goldenVectors = map[string]golden{
	// GitHub docs, "Validating webhook deliveries": secret "It's a Secret to
	// Everybody", payload "Hello, World!".
	"github docs": {
		scheme: "github", secret: "It's a Secret to Everybody", body: "Hello, World!",
		headers: map[string]string{
			"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
			"X-GitHub-Delivery":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		},
		delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	},
	// Slack docs, "Verifying requests from Slack": the slash-command example.
	"slack docs": {
		scheme: "slack", secret: "8f742231b10e8888abcd99yyyzzz85a5", body: slackBody,
		headers: map[string]string{
			"X-Slack-Request-Timestamp": "1531420618",
			"X-Slack-Signature":         "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
		},
		now: time.Unix(1531420618, 0),
	},
	// An Events API event (the shape of Slack's app_mention example) signed
	// by the documented algorithm, computed with Python's hmac module:
	// hmac.new(secret, b"v0:" + ts + b":" + body, sha256).
	"slack event": {
		scheme: "slack", secret: "8f742231b10e8888abcd99yyyzzz85a5",
		body: `{"token":"z26uFbvR1xHJEdHE1OQiO6t8","team_id":"T061EG9RZ","api_app_id":"A0FFV41KK","event":{"type":"app_mention","user":"U061F7AUR","text":"hi","ts":"1515449522.000016","channel":"C0LAN2Q65"},"type":"event_callback","event_id":"Ev0LAN670R","event_time":1515449522}`,
		headers: map[string]string{
			"X-Slack-Request-Timestamp": "1531420618",
			"X-Slack-Signature":         "v0=e9a3e4ff22fa24a3c45ac608931ecdaa7e5d102ecb3dbd4a843dd3879ef3e7b2",
		},
		now: time.Unix(1531420618, 0), delivery: "Ev0LAN670R",
	},
	// Standard Webhooks / Svix reference test vector.
	"standard-webhooks reference": {
		scheme: "standard-webhooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`,
		headers: map[string]string{
			"Webhook-Id":        "msg_p5jXN8AQM9LWM0D4loKWxJek",
			"Webhook-Timestamp": "1614265330",
			"Webhook-Signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		},
		now: time.Unix(1614265330, 0), delivery: "msg_p5jXN8AQM9LWM0D4loKWxJek",
	},
	"standard-webhooks svix spelling, rotated secret": {
		scheme: "standard-webhooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", body: `{"test": 2432232314}`,
		headers: map[string]string{
			"Svix-Id":        "msg_p5jXN8AQM9LWM0D4loKWxJek",
			"Svix-Timestamp": "1614265330",
			"Svix-Signature": "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
		},
		now: time.Unix(1614265330, 0), delivery: "msg_p5jXN8AQM9LWM0D4loKWxJek",
	},
	// Stripe's documented scheme; signature computed with Python hmac:
	// hmac.new(b"whsec_test_secret", b"1492774577." + body, sha256).hexdigest().
	"stripe": {
		scheme: "stripe", secret: "whsec_test_secret", body: `{"id": "evt_test_webhook", "object": "event"}`,
		headers: map[string]string{
			"Stripe-Signature": "t=1492774577,v1=0000000000000000000000000000000000000000000000000000000000000000,v1=c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
		},
		now: time.Unix(1492774577, 0), delivery: "evt_test_webhook",
	},
	// Shopify's documented scheme; computed with Python hmac + base64.
	"shopify": {
		scheme: "shopify", secret: "hush", body: `{"id":820982911946154508,"email":"jon@doe.ca"}`,
		headers: map[string]string{
			"X-Shopify-Hmac-Sha256": "fp5HwmAHEVGQQwJU1KRpk57Ts2YHF6/TLOCczCtB5bs=",
			"X-Shopify-Webhook-Id":  "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
		},
		delivery: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
	},
	// The hmac scheme configured as GitHub signs, checked against GitHub's
	// documented example; as Shopify signs (base64), against the vector
	// above; and SHA-1 and SHA-512 against RFC 2202 and RFC 4231 (test case 2).
	"hmac as github": {
		scheme: "hmac", secret: "It's a Secret to Everybody", body: "Hello, World!",
		params: map[string]string{"header": "x-hub-signature-256", "prefix": "sha256=", "id_header": "X-GitHub-Delivery"},
		headers: map[string]string{
			"X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
			"X-GitHub-Delivery":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		},
		delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	},
	"hmac as shopify": {
		scheme: "hmac", secret: "hush", body: `{"id":820982911946154508,"email":"jon@doe.ca"}`,
		params:  map[string]string{"header": "X-Shopify-Hmac-Sha256", "encoding": "base64"},
		headers: map[string]string{"X-Shopify-Hmac-Sha256": "fp5HwmAHEVGQQwJU1KRpk57Ts2YHF6/TLOCczCtB5bs="},
	},
	"hmac sha1 (RFC 2202)": {
		scheme: "hmac", secret: "Jefe", body: "what do ya want for nothing?",
		params:  map[string]string{"header": "X-Hook-Signature", "algorithm": "sha1"},
		headers: map[string]string{"X-Hook-Signature": "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
	},
	"hmac sha512 (RFC 4231)": {
		scheme: "hmac", secret: "Jefe", body: "what do ya want for nothing?",
		params: map[string]string{"algorithm": "sha512", "prefix": "sha512=", "id_header": "X-Request-Id"},
		headers: map[string]string{
			"X-Signature":  "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
			"X-Request-Id": "req-1",
		},
		delivery: "req-1",
	},
	// Relay's scheme; computed with Python hmac.
	"relay": {
		scheme: "relay", secret: "rsk_example", body: `{"type":"payment.succeeded"}`,
		headers: map[string]string{
			"X-Relay-Signature": "6cc1195c84c814c948b48ffd1695c4807b08c0e0eb364e5adc41cb1acd09bc63",
		},
	},
}

func (g golden) request() Request {
	h := http.Header{}
	for k, v := range g.headers {
		h.Set(k, v)
	}
	return Request{Header: h, Body: []byte(g.body)}
}

func TestGoldenVectors(t *testing.T) {
	for name, g := range goldenVectors {
		t.Run(name, func(t *testing.T) {
			s, err := ForSource(g.scheme, g.params)
			if err != nil {
				t.Fatalf("scheme %q: %v", g.scheme, err)
			}
			req := g.request()
			if err := s.Verify(req, []string{"some-other-secret-1", g.secret}, g.now, 0); err != nil {
				t.Fatalf("Verify of the documented example: %v", err)
			}
			if got := s.DeliveryID(req); got != g.delivery {
				t.Errorf("DeliveryID = %q, want %q", got, g.delivery)
			}

			tampered := g.request()
			tampered.Body = append([]byte(nil), tampered.Body...)
			tampered.Body[len(tampered.Body)-1] ^= 1
			if err := s.Verify(tampered, []string{g.secret}, g.now, 0); !errors.Is(err, ErrMismatch) {
				t.Errorf("tampered body: err = %v, want ErrMismatch", err)
			}
			if err := s.Verify(req, []string{"wrong-secret-123"}, g.now, 0); !errors.Is(err, ErrMismatch) {
				t.Errorf("wrong secret: err = %v, want ErrMismatch", err)
			}
			if !g.now.IsZero() {
				for _, skew := range []time.Duration{6 * time.Minute, -6 * time.Minute} {
					if err := s.Verify(req, []string{g.secret}, g.now.Add(skew), 0); !errors.Is(err, ErrTimestamp) {
						t.Errorf("skew %v: err = %v, want ErrTimestamp", skew, err)
					}
				}
				if err := s.Verify(req, []string{g.secret}, g.now.Add(4*time.Minute), 0); err != nil {
					t.Errorf("4 minutes late is within the default tolerance: %v", err)
				}
			}
		})
	}
}

// TestSignsID holds every scheme to what SignsID says: a request whose
// delivery id is changed where DeliveryID reads it (a header, or the body)
// fails verification exactly when the scheme claims to sign its id. Ingest
// trusts SignsID to decide whether an unsigned header may name an event.
func TestSignsID(t *testing.T) {
	covered := map[string]bool{}
	for name, g := range goldenVectors {
		if g.delivery == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			s, err := ForSource(g.scheme, g.params)
			if err != nil {
				t.Fatal(err)
			}
			req := g.request()
			changed := Request{Header: req.Header.Clone(), Body: req.Body}
			for k, vs := range changed.Header {
				if len(vs) == 1 && vs[0] == g.delivery {
					changed.Header[k] = []string{g.delivery + "-replayed"}
				}
			}
			changed.Body = []byte(strings.ReplaceAll(string(req.Body), g.delivery, g.delivery+"-replayed"))
			if got := s.DeliveryID(changed); got != g.delivery+"-replayed" {
				t.Fatalf("DeliveryID after the change = %q: the test did not change the id", got)
			}
			err = s.Verify(changed, []string{g.secret}, g.now, 0)
			if s.SignsID() != (err != nil) {
				t.Fatalf("SignsID() = %v, but a request with another id verifies with error %v", s.SignsID(), err)
			}
			covered[g.scheme] = true
		})
	}
	for _, name := range Names() {
		// The relay scheme has no delivery id of its own.
		if !covered[name] && name != "relay" {
			t.Errorf("no golden vector with a delivery id covers scheme %s", name)
		}
	}
}

func TestSignThenVerify(t *testing.T) {
	now := time.Now()
	body := []byte(`{"id":"evt_123","type":"invoice.paid"}`)
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			s, _ := Lookup(name)
			secret := s.NewSecret()
			if err := s.CheckSecret(secret); err != nil {
				t.Fatalf("NewSecret made a secret CheckSecret rejects: %v", err)
			}
			h := http.Header{}
			if err := s.Sign(h, body, secret, now); err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(Request{Header: h, Body: body}, []string{secret}, now, 0); err != nil {
				t.Fatalf("Verify(Sign(...)) = %v", err)
			}
			// Every scheme reports the missing header by name.
			err := s.Verify(Request{Header: http.Header{}, Body: body}, []string{secret}, now, 0)
			var he *HeaderError
			if !errors.As(err, &he) || !errors.Is(err, ErrMissing) || he.Header == "" {
				t.Fatalf("no headers: err = %v, want a missing-header error naming it", err)
			}
		})
	}
}

func TestErrorsNeverCarrySecrets(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	for _, name := range Names() {
		s, _ := Lookup(name)
		h := http.Header{}
		_ = s.Sign(h, []byte("x"), s.NewSecret(), time.Now())
		err := s.Verify(Request{Header: h, Body: []byte("x")}, []string{secret}, time.Now(), 0)
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "MfKQ9r8") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func TestStandardSignSeveralSecrets(t *testing.T) {
	now := time.Unix(1614265330, 0)
	old, cur := StandardWebhooks{}.NewSecret(), StandardWebhooks{}.NewSecret()
	sig, err := StandardSign("msg_1", now, []byte("body"), cur, old)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("want 2 signatures, got %d: %s", n, sig)
	}
	h := http.Header{}
	h.Set(HeaderWebhookID, "msg_1")
	h.Set(HeaderWebhookTimestamp, "1614265330")
	h.Set(HeaderWebhookSignature, sig)
	for _, secret := range []string{old, cur} {
		if err := (StandardWebhooks{}).Verify(Request{Header: h, Body: []byte("body")}, []string{secret}, now, 0); err != nil {
			t.Fatalf("a receiver holding either secret must verify: %v", err)
		}
	}
}

func TestMalformedHeaders(t *testing.T) {
	cases := []struct {
		scheme string
		h      map[string]string
	}{
		{"github", map[string]string{"X-Hub-Signature-256": "sha1=abc"}},
		{"github", map[string]string{"X-Hub-Signature-256": "sha256=zz"}},
		{"stripe", map[string]string{"Stripe-Signature": "t=1,v1=nothex"}},
		{"stripe", map[string]string{"Stripe-Signature": "garbage"}},
		{"standard-webhooks", map[string]string{"Webhook-Id": "m", "Webhook-Timestamp": "1", "Webhook-Signature": "v1"}},
		{"standard-webhooks", map[string]string{"Webhook-Id": "m", "Webhook-Timestamp": "abc", "Webhook-Signature": "v1,AAAA"}},
		{"slack", map[string]string{"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v1=00"}},
		{"shopify", map[string]string{"X-Shopify-Hmac-Sha256": "%%%"}},
		{"relay", map[string]string{"X-Relay-Signature": "abc"}},
	}
	for _, c := range cases {
		s, _ := Lookup(c.scheme)
		h := http.Header{}
		for k, v := range c.h {
			h.Set(k, v)
		}
		err := s.Verify(Request{Header: h, Body: []byte("{}")}, []string{"secret-secret"}, time.Unix(1, 0), 0)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s %v: err = %v, want ErrMalformed", c.scheme, c.h, err)
		}
	}
}

func TestSlackHandshake(t *testing.T) {
	// The payload of Slack's url_verification event, from its documentation.
	const doc = `{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	ans, ok := Slack{}.Handshake(Request{Header: http.Header{}, Body: []byte(doc)})
	if !ok || ans.ContentType != "application/json" || string(ans.Body) != `{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}` {
		t.Fatalf("url_verification: %v %q %s", ok, ans.ContentType, ans.Body)
	}
	// The challenge goes back as data, whatever it holds.
	ans, ok = Slack{}.Handshake(Request{Body: []byte(`{"type":"url_verification","challenge":"a\"<b>\\c"}`)})
	var back struct{ Challenge string }
	if !ok || json.Unmarshal(ans.Body, &back) != nil || back.Challenge != `a"<b>\c` {
		t.Fatalf("escaped challenge: %v %s", ok, ans.Body)
	}
	for name, body := range map[string]string{
		"an event":                 `{"type":"event_callback","event":{"type":"message","text":"url_verification"}}`,
		"no challenge":             `{"type":"url_verification"}`,
		"challenge not a string":   `{"type":"url_verification","challenge":42}`,
		"not JSON":                 `type=url_verification&challenge=x`,
		"the word in another type": `{"type":"url_verification_v2","challenge":"x"}`,
	} {
		if ans, ok := (Slack{}).Handshake(Request{Body: []byte(body)}); ok {
			t.Errorf("%s: answered %s", name, ans.Body)
		}
	}
	for _, name := range Names() {
		s, _ := Lookup(name)
		if _, ok := s.(Handshaker); ok != (name == "slack") {
			t.Errorf("%s: Handshaker = %v", name, ok)
		}
	}
}

// The hmac scheme takes its parameters from the source, refuses wrong ones
// naming them, and fills in the defaults; no other scheme takes any.
func TestHMACConfigure(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		err    string
	}{
		{map[string]string{"algorithm": "md5"}, "algorithm:"},
		{map[string]string{"encoding": "base32"}, "encoding:"},
		{map[string]string{"header": "Bad Header"}, "header:"},
		{map[string]string{"id_header": "a\nb"}, "id_header:"},
		{map[string]string{"prefix": "a\r\nb"}, "prefix:"},
		{map[string]string{"header": "X-Sig", "type_header": "x-sig"}, "header:"},
		{map[string]string{"colour": "red"}, "colour:"},
	} {
		if _, err := ForSource("hmac", tc.params); err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%v: err = %v, want one starting %q", tc.params, err, tc.err)
		}
	}
	if _, err := ForSource("github", map[string]string{"header": "X-Sig"}); err == nil || !strings.HasPrefix(err.Error(), "header:") {
		t.Errorf("github with a parameter: %v", err)
	}
	s, err := ForSource("hmac", map[string]string{"type_header": "linear-event", "prefix": ""})
	if err != nil {
		t.Fatal(err)
	}
	got := s.(Configurable).Params()
	want := map[string]string{"header": "X-Signature", "algorithm": "sha256", "encoding": "hex", "type_header": "Linear-Event"}
	if len(got) != len(want) {
		t.Fatalf("params %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("params %v, want %v", got, want)
		}
	}
	h := http.Header{"Linear-Event": {"Issue"}}
	if typ := s.(Typer).EventType(Request{Header: h}); typ != "Issue" {
		t.Fatalf("event type %q", typ)
	}
	// A prefix the header lacks, or a signature of the wrong length, is malformed.
	p, _ := ForSource("hmac", map[string]string{"prefix": "sha256="})
	for _, v := range []string{"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "sha256=7571"} {
		err := p.Verify(Request{Header: http.Header{"X-Signature": {v}}, Body: []byte("x")}, []string{"secret-123"}, time.Now(), 0)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", v, err)
		}
	}
}

// The schemes that sign a time are those whose golden vectors carry one.
func TestTimestamped(t *testing.T) {
	for name, g := range goldenVectors {
		s, err := ForSource(g.scheme, g.params)
		if err != nil {
			t.Fatal(err)
		}
		if Timestamped(s) != !g.now.IsZero() {
			t.Errorf("%s: Timestamped = %v, but its vector has time %v", name, Timestamped(s), g.now)
		}
	}
}
