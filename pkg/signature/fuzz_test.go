package signature

import (
	"net/http"
	"testing"
	"time"
)

// FuzzParseStripeHeader: any input either parses into a timestamp and 32-byte
// signatures or is rejected; it never panics.
func FuzzParseStripeHeader(f *testing.F) {
	f.Add("t=1492774577,v1=c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a,v0=00")
	f.Add("t=,v1=")
	f.Add(",,,=")
	f.Fuzz(func(t *testing.T, v string) {
		ts, sigs, err := ParseStripeHeader(v)
		if err != nil {
			return
		}
		if ts == "" || len(sigs) == 0 {
			t.Fatalf("accepted %q without timestamp or signature", v)
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("accepted a %d-byte signature from %q", len(s), v)
			}
		}
	})
}

// FuzzParseStandardSignatures: the same for webhook-signature.
func FuzzParseStandardSignatures(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	f.Add("v1a,xyz v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	f.Add("v1, v1,,")
	f.Fuzz(func(t *testing.T, v string) {
		sigs, err := ParseStandardSignatures(v)
		if err != nil {
			return
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("accepted a %d-byte signature from %q", len(s), v)
			}
		}
	})
}

// FuzzVerify throws arbitrary header values and bodies at every scheme: no
// panic, and no acceptance without a signature made with the secret.
func FuzzVerify(f *testing.F) {
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "1531420618", "msg_1", []byte("Hello, World!"))
	f.Add("t=1,v1=00", "", "", []byte("{}"))
	f.Add("v0=zz", "-1", "\x00", []byte{0xff})
	f.Fuzz(func(t *testing.T, sig, ts, id string, body []byte) {
		h := http.Header{}
		for _, k := range []string{HeaderRelaySignature, HeaderGitHubSignature, HeaderShopifyHmac, HeaderSlackSignature, HeaderStripeSignature, HeaderWebhookSignature, defaultHeader} {
			h.Set(k, sig)
		}
		h.Set(HeaderSlackTimestamp, ts)
		h.Set(HeaderWebhookTimestamp, ts)
		h.Set(HeaderWebhookID, id)
		for _, name := range Names() {
			s, _ := Lookup(name)
			if err := s.Verify(Request{Header: h, Body: body}, []string{"fuzz-secret-not-used-to-sign", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSx"}, time.Unix(1531420618, 0), time.Hour); err == nil {
				t.Fatalf("%s accepted an unsigned request: sig=%q ts=%q", name, sig, ts)
			}
		}
	})
}
