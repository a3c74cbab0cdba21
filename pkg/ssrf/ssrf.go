// Package ssrf keeps deliveries from reaching internal networks. Relay POSTs
// to URLs that API callers choose, so without a guard a subscription could
// point at a cloud metadata service, Redis or the broker. The guard runs in
// the dialer, after DNS resolution: every resolved address is checked and the
// connection goes to the checked address, so a DNS answer that changes between
// check and connect (rebinding) cannot slip through.
package ssrf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrForbidden is wrapped by every refusal.
var ErrForbidden = errors.New("destination address is not allowed")

// blocked are the ranges no delivery may reach: private, loopback,
// link-local, multicast, shared, documentation and otherwise reserved space,
// IPv4 and IPv6.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"255.255.255.255/32",
		"::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Allowed reports whether ip may be dialled. IPv4-mapped IPv6 addresses are
// judged as the IPv4 address they carry. An address with a zone (fe80::1%eth0)
// never is: a zone names an interface of Relay's own host, and no prefix
// contains a zoned address, so no range check could refuse it.
func Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Control is a net.Dialer Control function that refuses forbidden addresses.
// It sees the address actually being connected to, after resolution.
func Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbidden, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !Allowed(ip) {
		return fmt.Errorf("%w: %s", ErrForbidden, host)
	}
	return nil
}

// Dialer returns a dialer with the given connect timeout that refuses
// forbidden addresses unless allowPrivate is set (development and tests).
func Dialer(timeout time.Duration, allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = Control
	}
	return d
}

// CheckURL validates a subscription URL: absolute http or https, a host, a
// port (when given) from 1 to 65535, no credentials (they would show in
// every listing), at most 2048 bytes; and, unless allowPrivate, no literal
// forbidden IP. Host names are checked again at every delivery, after
// resolution.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > 2048 {
		return errors.New("url is longer than 2048 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("url does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("url must start with http:// or https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("url has no host")
	}
	if p := u.Port(); p != "" {
		// url.Parse checks only that a port is digits.
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("url port %s is not from 1 to 65535", p)
		}
	}
	if u.User != nil {
		return errors.New("url must not carry credentials; receivers verify the webhook signature instead")
	}
	if u.Fragment != "" {
		return errors.New("url must not have a fragment")
	}
	host := strings.Trim(u.Hostname(), "[]")
	if zoned(host) {
		// Whatever RELAY_ALLOW_PRIVATE_DESTINATIONS says: a zone names an
		// interface of Relay's own host, never a receiver.
		return fmt.Errorf("%w: %s (an IPv6 address with a zone)", ErrForbidden, host)
	}
	if !allowPrivate {
		if ip, err := netip.ParseAddr(host); err == nil && !Allowed(ip) {
			return fmt.Errorf("%w: %s (set RELAY_ALLOW_PRIVATE_DESTINATIONS=true for local development)", ErrForbidden, host)
		}
		if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
			return fmt.Errorf("%w: %s (set RELAY_ALLOW_PRIVATE_DESTINATIONS=true for local development)", ErrForbidden, host)
		}
	}
	return nil
}

// zoned reports whether host is an IP address with a zone.
func zoned(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() != ""
}

// IsHTTPS reports whether raw is an https URL (its scheme, in any case).
func IsHTTPS(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.EqualFold(u.Scheme, "https")
}

// CheckHost resolves host (a name or a literal address) with r and refuses
// it unless every address it resolves to is allowed. It is the guard for a
// delivery that goes through an egress proxy, which connects on Relay's
// behalf: Relay cannot see the address the proxy picks, so none may be
// forbidden. (The proxy resolves again; one that enforces its own policy,
// such as smokescreen, also closes the window a changing DNS answer leaves.)
func CheckHost(ctx context.Context, r *net.Resolver, host string) error {
	if h := strings.Trim(host, "[]"); zoned(h) {
		return fmt.Errorf("%w: %s (an IPv6 address with a zone)", ErrForbidden, h)
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !Allowed(ip) {
			return fmt.Errorf("%w: %s", ErrForbidden, ip.Unmap())
		}
		return nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%w: %s resolves to no address", ErrForbidden, host)
	}
	for _, ip := range addrs {
		if !Allowed(ip) {
			return fmt.Errorf("%w: %s resolves to %s", ErrForbidden, host, ip.Unmap())
		}
	}
	return nil
}

// DialContext resolves host with r and dials the first allowed address,
// refusing when every address is forbidden. Unlike Control it reports the
// refusal before any connection attempt, with the host name in the error.
// A zoned address is refused even by a dialer without the guard.
func DialContext(ctx context.Context, d *net.Dialer, r *net.Resolver, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if zoned(host) {
		return nil, fmt.Errorf("%w: %s (an IPv6 address with a zone)", ErrForbidden, host)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	var lastErr error = fmt.Errorf("%w: %s resolves to no address", ErrForbidden, host)
	for _, ip := range addrs {
		if ip.Zone() != "" || (d.Control != nil && !Allowed(ip)) {
			lastErr = fmt.Errorf("%w: %s resolves to %s", ErrForbidden, host, ip.Unmap())
			continue
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
