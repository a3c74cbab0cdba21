package catalog

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseAllowed reads one allowed_ips entry as a prefix: an address alone is
// itself (/32, /128).
func ParseAllowed(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		// Client addresses are compared unmapped: an IPv4-mapped prefix
		// would match none of them, so it is stored as the IPv4 one it means.
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s reaches beyond the IPv4-mapped range", p)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// IPAllowed reports whether the client address ip is in one of allowed
// (prefixes as ParseAllowed reads them, stored in their canonical form).
func IPAllowed(ip string, allowed []string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, s := range allowed {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}
