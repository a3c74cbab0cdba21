package catalog

import "testing"

// An allowed_ips entry is stored as the prefix client addresses are
// compared with, IPv4-mapped forms as the IPv4 they mean.
func TestParseAllowed(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.10": "192.0.2.10/32", "10.1.2.3/8": "10.0.0.0/8", "::ffff:198.51.100.9": "198.51.100.9/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8", "2001:db8::1/32": "2001:db8::/32",
	} {
		p, err := ParseAllowed(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseAllowed(%q) = %v, %v; want %s", in, p, err, want)
		}
		if !IPAllowed(p.Addr().String(), []string{p.String()}) {
			t.Errorf("%s is not allowed by its own prefix %s", p.Addr(), p)
		}
	}
	for _, bad := range []string{"::ffff:0.0.0.0/80", "10.0.0.0/33", "host"} {
		if p, err := ParseAllowed(bad); err == nil {
			t.Errorf("ParseAllowed(%q) = %v, want an error", bad, p)
		}
	}
}
