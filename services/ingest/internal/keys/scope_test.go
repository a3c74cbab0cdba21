package keys

import "testing"

func TestDecide(t *testing.T) {
	admin := Principal{Scope: Admin}
	write := Principal{KeyID: "key_w", Scope: Write}
	read := Principal{KeyID: "key_r", Scope: Read}
	mine := Principal{KeyID: "key_m", Scope: Write, Sources: []string{"src_a", "src_b"}}
	myAdmin := Principal{KeyID: "key_ma", Scope: Admin, Sources: []string{"src_a"}}
	for _, tc := range []struct {
		name string
		p    Principal
		r    Request
		want string // the refusal's code, "" to allow
	}{
		{"admin makes keys", admin, Request{"POST", "/keys", ""}, ""},
		{"admin rewraps", admin, Request{"POST", "/secrets/rewrap", ""}, ""},
		{"write may not list keys", write, Request{"GET", "/keys", ""}, CodeScope},
		{"write may not revoke a key", write, Request{"DELETE", "/keys/:key_id", ""}, CodeScope},
		{"write may not rewrap", write, Request{"POST", "/secrets/rewrap", ""}, CodeScope},
		{"a restricted admin may not make keys", myAdmin, Request{"POST", "/keys", ""}, CodeScope},
		{"write creates sources", write, Request{"POST", "/sources", ""}, ""},
		{"write redrives", write, Request{"POST", "/replay/dlq", ""}, ""},
		{"read reads", read, Request{"GET", "/sources/:source_id/events", "src_a"}, ""},
		{"read may not replay", read, Request{"POST", "/sources/:source_id/events/:event_id/replay", "src_a"}, CodeScope},
		{"read may not delete", read, Request{"DELETE", "/sources/:source_id", "src_a"}, CodeScope},
		{"read may not patch", read, Request{"PATCH", "/sources/:source_id/subscriptions/:sub_id", "src_a"}, CodeScope},
		{"read may not read keys", read, Request{"GET", "/keys", ""}, CodeScope},
		{"read sees the status", read, Request{"GET", "/status", ""}, ""},
		{"restricted: its source", mine, Request{"PATCH", "/sources/:source_id", "src_b"}, ""},
		{"restricted: another source", mine, Request{"GET", "/sources/:source_id", "src_c"}, CodeSource},
		{"restricted: lists its sources", mine, Request{"GET", "/sources", ""}, ""},
		{"restricted: may not create a source", mine, Request{"POST", "/sources", ""}, CodeSource},
		{"restricted: the DLQ of its source", mine, Request{"GET", "/dlq", "src_a"}, ""},
		{"restricted: the DLQ of another", mine, Request{"POST", "/replay/dlq", "src_c"}, CodeSource},
		{"restricted: the whole DLQ", mine, Request{"GET", "/dlq", ""}, CodeSource},
		{"restricted admin: its source", myAdmin, Request{"DELETE", "/sources/:source_id", "src_a"}, ""},
		{"restricted: a query source on a path route", mine, Request{"GET", "/sources/:source_id", ""}, CodeSource},
		{"no scope", Principal{KeyID: "key_x"}, Request{"GET", "/sources", ""}, CodeScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide(tc.p, tc.r)
			if v.Code != tc.want {
				t.Fatalf("Decide = %+v, want code %q", v, tc.want)
			}
			if !v.Allowed() && v.Message == "" {
				t.Fatal("a refusal without a message")
			}
		})
	}
}

func TestParseScope(t *testing.T) {
	for _, s := range []string{"admin", "write", "read"} {
		if got, ok := ParseScope(s); !ok || string(got) != s {
			t.Errorf("ParseScope(%q) = %q, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "Admin", "owner"} {
		if _, ok := ParseScope(s); ok {
			t.Errorf("ParseScope(%q) accepted", s)
		}
	}
}
