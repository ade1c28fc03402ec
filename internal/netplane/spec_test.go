package netplane

import (
	"net/netip"
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		Underlay: netip.MustParseAddr("192.0.2.1"),
		VPCs: []VPC{
			{
				Name: "a", VNI: 100,
				Subnets: []Subnet{{Name: "web", CIDR: netip.MustParsePrefix("10.1.1.0/24")}},
				Remote:  []RemoteSubnet{{Name: "db", CIDR: netip.MustParsePrefix("10.1.2.0/24"), Gateway: netip.MustParseAddr("192.0.2.2")}},
			},
			{
				// Same CIDRs as VPC a: VPCs are isolated.
				Name: "b", VNI: 200,
				Subnets: []Subnet{{Name: "web", CIDR: netip.MustParsePrefix("10.1.1.0/24")}},
			},
		},
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Spec)
		want   string // in the error; "" for none
	}{
		{"valid", func(*Spec) {}, ""},
		{"no VPCs", func(s *Spec) { s.VPCs = nil }, ""},
		{"explicit MTU and prefix", func(s *Spec) { s.MTU = 9000; s.Prefix = "fx-1.a_b" }, ""},
		{"no underlay", func(s *Spec) { s.Underlay = netip.Addr{} }, "underlay"},
		{"IPv6 underlay", func(s *Spec) { s.Underlay = netip.MustParseAddr("2001:db8::1") }, "underlay"},
		{"loopback underlay", func(s *Spec) { s.Underlay = netip.MustParseAddr("127.0.0.1") }, "underlay"},
		{"MTU too small", func(s *Spec) { s.MTU = 100 }, "MTU 100"},
		{"prefix with a slash", func(s *Spec) { s.Prefix = "a/b" }, "prefix"},
		{"empty VPC name", func(s *Spec) { s.VPCs[1].Name = "" }, "name is empty"},
		{"duplicate VPC name", func(s *Spec) { s.VPCs[1].Name = "a" }, "used by another VPC"},
		{"duplicate VNI", func(s *Spec) { s.VPCs[1].VNI = 100 }, `VNI 100 is also VPC "a"'s`},
		{"VNI 0", func(s *Spec) { s.VPCs[0].VNI = 0 }, "out of range"},
		{"VNI over 24 bits", func(s *Spec) { s.VPCs[0].VNI = 1 << 24 }, "out of range"},
		{"empty subnet name", func(s *Spec) { s.VPCs[0].Subnets[0].Name = "" }, "name is empty"},
		{"duplicate subnet name", func(s *Spec) { s.VPCs[0].Remote[0].Name = "web" }, "used by another subnet"},
		{"not a network address", func(s *Spec) { s.VPCs[0].Subnets[0].CIDR = netip.MustParsePrefix("10.1.1.5/24") }, "did you mean 10.1.1.0/24"},
		{"IPv6 subnet", func(s *Spec) { s.VPCs[0].Subnets[0].CIDR = netip.MustParsePrefix("fd00::/64") }, "not an IPv4 network"},
		{"no CIDR", func(s *Spec) { s.VPCs[0].Subnets[0].CIDR = netip.Prefix{} }, "not an IPv4 network"},
		{"/31", func(s *Spec) { s.VPCs[0].Subnets[0].CIDR = netip.MustParsePrefix("10.1.1.0/31") }, "at most /30"},
		{"local overlaps remote", func(s *Spec) { s.VPCs[0].Remote[0].CIDR = netip.MustParsePrefix("10.1.0.0/16") }, "overlaps local subnet \"web\""},
		{"locals overlap", func(s *Spec) {
			s.VPCs[1].Subnets = append(s.VPCs[1].Subnets, Subnet{Name: "x", CIDR: netip.MustParsePrefix("10.1.1.128/25")})
		}, "overlaps"},
		{"remote gateway missing", func(s *Spec) { s.VPCs[0].Remote[0].Gateway = netip.Addr{} }, "gateway"},
		{"remote through ourselves", func(s *Spec) { s.VPCs[0].Remote[0].Gateway = s.Underlay }, "own underlay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.change(&s)
			err := Validate(s)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Validate accepted it, want an error mentioning %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Validate: %v\nwant an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := validSpec()
	s.Underlay = netip.Addr{}
	s.VPCs[1].VNI = 100
	err := Validate(s)
	if err == nil || !strings.Contains(err.Error(), "underlay") || !strings.Contains(err.Error(), "VNI 100") {
		t.Fatalf("Validate: %v, want both the underlay and the VNI named", err)
	}
}

func TestPodValidate(t *testing.T) {
	good := Pod{
		ContainerID: "c1", IfName: "eth0", NetNSPath: "/run/netns/x", VNI: 1, Subnet: "web",
		Addr: netip.MustParsePrefix("10.1.1.5/24"),
	}
	for _, tc := range []struct {
		name   string
		change func(*Pod)
		want   string
	}{
		{"valid", func(*Pod) {}, ""},
		{"explicit gateway", func(p *Pod) { p.Gateway = netip.MustParseAddr("10.1.1.254") }, ""},
		{"no container", func(p *Pod) { p.ContainerID = "" }, "container ID"},
		{"long interface name", func(p *Pod) { p.IfName = "abcdefghijklmnop" }, "interface name"},
		{"no netns", func(p *Pod) { p.NetNSPath = "" }, "namespace path"},
		{"no subnet", func(p *Pod) { p.Subnet = "" }, "subnet name"},
		{"network address", func(p *Pod) { p.Addr = netip.MustParsePrefix("10.1.1.0/24") }, "network address"},
		{"broadcast address", func(p *Pod) { p.Addr = netip.MustParsePrefix("10.1.1.255/24") }, "broadcast"},
		{"gateway's address", func(p *Pod) { p.Addr = netip.MustParsePrefix("10.1.1.1/24") }, "gateway"},
		{"gateway outside", func(p *Pod) { p.Gateway = netip.MustParseAddr("10.1.2.1") }, "outside"},
		{"VNI 0", func(p *Pod) { p.VNI = 0 }, "VNI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.change(&p)
			err := p.validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	if got := lastAddr(netip.MustParsePrefix("10.1.0.0/22")); got != netip.MustParseAddr("10.1.3.255") {
		t.Errorf("lastAddr(10.1.0.0/22) = %v", got)
	}
}
