package ssrf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"93.184.216.34", true},
		{"8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"198.18.0.1", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false}, // IPv4-mapped loopback
		{"::ffff:10.1.2.3", false},
		{"::ffff:93.184.216.34", true},
		{"64:ff9b::a00:1", false}, // NAT64 of 10.0.0.1
		{"2001:db8::1", false},
		// A zone makes Prefix.Contains false for every range: refused,
		// whatever the address.
		{"::1%lo", false},
		{"fe80::1%eth0", false},
		{"2606:4700:4700::1111%eth0", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url          string
		allowPrivate bool
		wantErr      string
	}{
		{"https://example.com/hook", false, ""},
		{"http://example.com:8080/hook?x=1", false, ""},
		{"ftp://example.com", false, "http"},
		{"/relative", false, "http"},
		{"https://", false, "no host"},
		{"https://user:pass@example.com/", false, "credentials"},
		{"http://127.0.0.1:9000/", false, "not allowed"},
		{"http://[::1]/", false, "not allowed"},
		{"http://localhost:3000/", false, "not allowed"},
		{"http://169.254.169.254/latest/meta-data", false, "not allowed"},
		{"http://localhost:3000/", true, ""},
		{"http://127.0.0.1:9000/", true, ""},
		{"https://example.com/#frag", false, "fragment"},
		{"https://example.com:65535/", false, ""},
		{"https://example.com:0/", false, "port 0"},
		{"https://example.com:99999/", false, "port 99999"},
		{"http://127.0.0.1:70000/", true, "port 70000"},
		// A zoned IPv6 literal is refused whatever
		// RELAY_ALLOW_PRIVATE_DESTINATIONS says: it names an interface of
		// Relay's own host, never a receiver.
		{"http://[::1%25lo]/", false, "zone"},
		{"http://[::1%25lo]/", true, "zone"},
		{"http://[fe80::1%25eth0]:8080/", true, "zone"},
		{"http://[2606:4700:4700::1111%25eth0]/", false, "zone"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckURL(tt.url, tt.allowPrivate)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("CheckURL = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckURL = %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}

func TestDialRefusesPrivateAfterResolution(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx := context.Background()

	// "localhost" is a DNS name resolving to loopback: refused by the guard.
	guarded := Dialer(time.Second, false)
	if _, err := DialContext(ctx, guarded, net.DefaultResolver, "tcp", net.JoinHostPort("localhost", port)); !errors.Is(err, ErrForbidden) {
		t.Fatalf("dial localhost through the guard: %v, want ErrForbidden", err)
	}
	// The Control hook catches a literal address too, whatever dials it.
	if _, err := guarded.DialContext(ctx, "tcp", ln.Addr().String()); !errors.Is(err, ErrForbidden) {
		t.Fatalf("raw dial of 127.0.0.1 through the guarded dialer: %v, want ErrForbidden", err)
	}
	if _, err := guarded.DialContext(ctx, "tcp", net.JoinHostPort("::ffff:127.0.0.1", port)); err == nil || !errors.Is(err, ErrForbidden) {
		t.Fatalf("raw dial of the IPv4-mapped loopback: %v, want ErrForbidden", err)
	}
	// With private destinations allowed (dev, tests) the same dial works.
	open := Dialer(time.Second, true)
	c, err := DialContext(ctx, open, net.DefaultResolver, "tcp", net.JoinHostPort("localhost", port))
	if err != nil {
		t.Fatalf("dial with private destinations allowed: %v", err)
	}
	c.Close()

	// A zoned address is refused at dial time, with or without the guard.
	for _, d := range []*net.Dialer{guarded, open} {
		if _, err := DialContext(ctx, d, net.DefaultResolver, "tcp", net.JoinHostPort("::1%lo", port)); !errors.Is(err, ErrForbidden) {
			t.Fatalf("dial of ::1%%lo (guard %v): %v, want ErrForbidden", d.Control != nil, err)
		}
	}
	if _, err := guarded.DialContext(ctx, "tcp", net.JoinHostPort("::1%lo", port)); !errors.Is(err, ErrForbidden) {
		t.Fatalf("raw dial of ::1%%lo through the guarded dialer: %v, want ErrForbidden", err)
	}
}

// CheckHost, the guard of deliveries through a proxy, refuses a host when
// any address it is or resolves to is forbidden.
func TestCheckHost(t *testing.T) {
	ctx := context.Background()
	for host, ok := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1:248:1893:25c8:1946": true,
		"10.0.0.1": false, "127.0.0.1": false, "[::1]": false, "::ffff:169.254.169.254": false, "localhost": false,
		"[::1%lo]": false, "2606:4700:4700::1111%eth0": false,
	} {
		err := CheckHost(ctx, net.DefaultResolver, host)
		if ok != (err == nil) || (!ok && !errors.Is(err, ErrForbidden)) {
			t.Errorf("CheckHost(%s) = %v, want allowed %v", host, err, ok)
		}
	}
}
