package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckCIDR(t *testing.T) {
	for _, tc := range []struct {
		cidr    string
		wantErr string
	}{
		{"10.1.1.0/24", ""},
		{"10.1.1.0/30", ""},
		{"10.0.0.0/8", ""},
		{"10.1.1.0/31", "must be at most 30"},
		{"10.1.1.1/32", "must be at most 30"},
		{"10.1.1.5/24", "not a network address (want 10.1.1.0/24)"},
		{"fd00::/64", "not IPv4"},
	} {
		err := checkCIDR(netip.MustParsePrefix(tc.cidr))
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkCIDR(%s) = %v, want error containing %q", tc.cidr, err, tc.wantErr)
		}
	}
	if err := checkCIDR(netip.Prefix{}); err == nil {
		t.Error("checkCIDR(zero Prefix) accepted it")
	}
}

func TestUsableRange(t *testing.T) {
	for _, tc := range []struct {
		cidr        string
		first, last string
		count       int
	}{
		{"10.1.1.0/24", "10.1.1.2", "10.1.1.254", 253},
		{"10.1.1.0/29", "10.1.1.2", "10.1.1.6", 5},
		{"10.1.1.8/29", "10.1.1.10", "10.1.1.14", 5},
		{"10.1.1.4/30", "10.1.1.6", "10.1.1.6", 1},
		{"10.1.0.0/16", "10.1.0.2", "10.1.255.254", 65533},
		{"10.255.255.0/24", "10.255.255.2", "10.255.255.254", 253},
	} {
		cidr := netip.MustParsePrefix(tc.cidr)
		first, last := usableRange(cidr)
		if first.String() != tc.first || last.String() != tc.last || usableCount(cidr) != tc.count {
			t.Errorf("%s: range %s-%s (%d), want %s-%s (%d)", tc.cidr, first, last, usableCount(cidr), tc.first, tc.last, tc.count)
		}
	}
}

func TestUsable(t *testing.T) {
	cidr := netip.MustParsePrefix("10.1.1.8/29")
	for addr, want := range map[string]bool{
		"10.1.1.8": false, "10.1.1.9": false, // network, gateway
		"10.1.1.10": true, "10.1.1.14": true,
		"10.1.1.15": false, "10.1.1.16": false, "10.1.1.7": false, // broadcast, outside
	} {
		if got := usable(cidr, netip.MustParseAddr(addr)); got != want {
			t.Errorf("usable(%s, %s) = %t, want %t", cidr, addr, got, want)
		}
	}
}

func TestNext(t *testing.T) {
	cidr := netip.MustParsePrefix("10.1.1.0/29") // usable .2 to .6
	for _, tc := range []struct {
		name  string
		inUse []string
		last  string
		want  string // "" for none free
	}{
		{"empty pool starts at the first usable", nil, "", "10.1.1.2"},
		{"after the last reserved", nil, "10.1.1.3", "10.1.1.4"},
		{"a released address is not reused at once", []string{"10.1.1.2"}, "10.1.1.3", "10.1.1.4"},
		{"skips what is in use", []string{"10.1.1.4", "10.1.1.5"}, "10.1.1.3", "10.1.1.6"},
		{"wraps after the last usable", nil, "10.1.1.6", "10.1.1.2"},
		{"wraps past what is in use", []string{"10.1.1.6", "10.1.1.2"}, "10.1.1.5", "10.1.1.3"},
		{"reuses the last reserved when all else is taken", []string{"10.1.1.2", "10.1.1.4", "10.1.1.5", "10.1.1.6"}, "10.1.1.3", "10.1.1.3"},
		{"last outside the range starts at the first", nil, "192.168.0.9", "10.1.1.2"},
		{"last on the broadcast starts at the first", nil, "10.1.1.7", "10.1.1.2"},
		{"full", []string{"10.1.1.2", "10.1.1.3", "10.1.1.4", "10.1.1.5", "10.1.1.6"}, "10.1.1.4", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used := map[netip.Addr]bool{}
			for _, a := range tc.inUse {
				used[netip.MustParseAddr(a)] = true
			}
			var last netip.Addr
			if tc.last != "" {
				last = netip.MustParseAddr(tc.last)
			}
			got, ok := next(cidr, func(a netip.Addr) bool { return used[a] }, last)
			switch {
			case tc.want == "" && ok:
				t.Errorf("next = %s, want none free", got)
			case tc.want != "" && (!ok || got.String() != tc.want):
				t.Errorf("next = %s, %t; want %s", got, ok, tc.want)
			}
		})
	}
}
