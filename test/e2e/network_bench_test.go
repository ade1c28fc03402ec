package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// The paths BenchmarkNetwork measures, in the order of its table.
const (
	pathVeth          = "veth"
	pathSameSubnet    = "same-subnet"
	pathAcrossSubnets = "across-subnets"
	pathCrossCluster  = "crosscluster"
)

const (
	iperfPort   = 5201
	echoPort    = 7200
	iperfSecs   = 5    // seconds per iperf3 run
	benchRounds = 3    // rounds over the four paths, interleaved
	rttWarmup   = 200  // round trips before the timed ones, per round
	rttSamples  = 2000 // timed round trips per path and round
	firstPacket = 5    // subnets created to time the first packet
)

// BenchmarkNetwork measures the pod network of a real tree (root → a, b;
// real API servers, fornaxd gateways, pods wired by fornax-cni, as in
// TestNetwork) against a raw veth in the same run. One VPC, subnets a-1 and
// a-2 in cluster a and b-1 in cluster b; pods p1 and p2 in a-1, p3 in a-2,
// p4 in b-1. Paths, all from p1 (or the first baseline namespace):
//
//   - veth: two fresh network namespaces joined by one veth pair, MTU 1500
//     (the WAN links' MTU; the pods get 1450, the VXLAN overhead off);
//   - same-subnet: p1 → p2 (veth, bridge, veth);
//   - across-subnets: p1 → p3 (routed in a's router namespace);
//   - crosscluster: p1 → p4 (a's router, VXLAN over the WAN bridge, b's router).
//
// For each path: TCP throughput with iperf3 (one stream, 5 s, the receiver's
// figure; the median of 3 rounds that interleave the paths so that noise hits
// them alike), and the round trip of 1 byte each way on one TCP connection
// (2,000 after 200 of warm-up per round; p50 and p99 of the 6,000). Then,
// 5 times: a subnet created at the root for cluster b → the first TCP
// connection from p1 to a pod attached to it (TestNetwork's measurement),
// median and max. Root and iperf3 needed. Run with -benchtime=1x.
func BenchmarkNetwork(b *testing.B) {
	if err := netlab.Check(); err != nil {
		b.Skipf("skipping: %v", err)
	}
	for _, prog := range []string{"iperf3", "nsenter"} {
		if _, err := exec.LookPath(prog); err != nil {
			b.Skipf("skipping: %s is not installed (apt-get install iperf3 util-linux): %v", prog, err)
		}
	}
	nt := newNetTest(b, map[string]string{"a": "root", "b": "root"})
	nt.create(newVPC("bench", "10.20.0.0/16", "tenant-bench"),
		newSubnet("bench-a1", "bench", "10.20.1.0/24", "a"), newSubnet("bench-a2", "bench", "10.20.2.0/24", "a"),
		newSubnet("bench-b1", "bench", "10.20.3.0/24", "b"))
	pods := map[string]*netPod{}
	for _, p := range []struct{ cluster, name, subnet string }{
		{"a", "p1", "bench-a1"}, {"a", "p2", "bench-a1"}, {"a", "p3", "bench-a2"}, {"b", "p4", "bench-b1"},
	} {
		pods[p.name] = nt.newPod(p.cluster, p.name, p.subnet)
		nt.attach(pods[p.name], 60*time.Second)
	}
	p1 := pods["p1"]
	for _, to := range []string{"p2", "p3", "p4"} {
		nt.waitReach(p1, pods[to], 30*time.Second)
	}
	v1, v2, vethMTU := nt.vethPair(b)
	podMTU := linkMTU(b, p1.nsPath, podIf)
	paths := []struct {
		name     string
		from, to *netPod
	}{{pathVeth, v1, v2}, {pathSameSubnet, p1, pods["p2"]}, {pathAcrossSubnets, p1, pods["p3"]}, {pathCrossCluster, p1, pods["p4"]}}
	for _, p := range paths {
		startIperfServer(b, p.to)
		echoServer(b, p.to)
	}

	iter := 0
	for b.Loop() {
		iter++
		gbps, retrans, rtts := map[string][]float64{}, map[string][]float64{}, map[string][]time.Duration{}
		for range benchRounds {
			for _, p := range paths {
				bps, rt := iperf(b, p.from, p.to)
				gbps[p.name] = append(gbps[p.name], bps/1e9)
				retrans[p.name] = append(retrans[p.name], float64(rt))
				rtts[p.name] = append(rtts[p.name], roundTrips(b, p.from, p.to)...)
			}
		}

		// Subnet created at the root → first packet from a, as TestNetwork.
		var firsts, addeds []time.Duration
		for i := range firstPacket {
			name := fmt.Sprintf("bench-b%d-%d", iter, i+2)
			pod := nt.newPod("b", fmt.Sprintf("q%d-%d", iter, i), name)
			sn := newSubnet(name, "bench", fmt.Sprintf("10.20.%d.0/24", 10*iter+i), "b")
			added, first := nt.subnetToFirstPacket(b, sn, pod, p1)
			firsts, addeds = append(firsts, first), append(addeds, added)
		}

		var tbl strings.Builder
		tw := tabwriter.NewWriter(&tbl, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "path\tGbit/s (median)\truns\tretransmits (median)\tvs veth\tRTT p50 µs\tRTT p99 µs\t\n")
		veth := medianOf(gbps[pathVeth])
		for _, p := range paths {
			g := medianOf(gbps[p.name])
			p50, p99 := percentile(rtts[p.name], 0.50), percentile(rtts[p.name], 0.99)
			fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t\n", p.name, g, joinFloats(gbps[p.name]), medianOf(retrans[p.name]), g/veth, micros(p50), micros(p99))
			b.ReportMetric(g, p.name+"-Gbit/s")
			b.ReportMetric(micros(p50), p.name+"-rtt-p50-us")
			b.ReportMetric(micros(p99), p.name+"-rtt-p99-us")
			if p.name != pathVeth {
				b.ReportMetric(g/veth, p.name+"-vs-veth-ratio")
			}
		}
		_ = tw.Flush()
		firstMed, firstMax := medianOf(millis(firsts)), slices.Max(millis(firsts))
		b.ReportMetric(firstMed, "subnet-to-first-packet-ms")
		b.ReportMetric(firstMax, "subnet-to-first-packet-max-ms")
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "missed"
		}
		ratio := medianOf(gbps[pathCrossCluster]) / veth
		b.Logf("TCP, one stream, iperf3 %d s × %d rounds; RTT of 1 byte each way, %d per path; veth MTU %d, pods' MTU %d:\n%s"+
			"cross-cluster / veth = %.2f (goal ≥ 0.6: %s)\n"+
			"subnet created at the root → first TCP connection from cluster a: median %.0f ms, max %.0f ms of %d (%s ms; pod attached after %s ms; goal ≤ 2000 ms: %s)",
			iperfSecs, benchRounds, benchRounds*rttSamples, vethMTU, podMTU, tbl.String(),
			ratio, verdict(ratio >= 0.6),
			firstMed, firstMax, len(firsts), joinFloats(millis(firsts)), joinFloats(millis(addeds)), verdict(firstMed <= 2000))
	}
}

// vethPair makes the baseline: two network namespaces joined by a veth pair
// (MTU 1500, no qdisc change, default offloads), 10.254.0.1 and .2/30,
// removed when the benchmark ends.
func (nt *netTest) vethPair(b *testing.B) (one, two *netPod, mtu int) {
	b.Helper()
	var ends [2]*netPod
	var handles [2]netns.NsHandle
	for i := range ends {
		name := fmt.Sprintf("%s-veth%d", nt.base, i+1)
		h, err := netlab.NewNamedNS(name)
		if err != nil {
			b.Fatal(err)
		}
		handles[i] = h
		ends[i] = &netPod{name: name, nsPath: filepath.Join("/run/netns", name), addr: netip.AddrFrom4([4]byte{10, 254, 0, byte(i + 1)})}
		b.Cleanup(func() {
			_ = h.Close()
			if err := netns.DeleteNamed(name); err != nil {
				b.Errorf("removing namespace %s: %v", name, err)
			}
			if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
				b.Errorf("left behind: /run/netns/%s", name)
			}
		})
	}
	const mtu1500 = 1500
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: podIf, MTU: mtu1500, Namespace: netlink.NsFd(handles[0])},
		PeerName: podIf, PeerNamespace: netlink.NsFd(handles[1])}
	if err := netlink.LinkAdd(veth); err != nil {
		b.Fatalf("creating the baseline veth: %v", err)
	}
	for i, h := range handles {
		nh, err := netlink.NewHandleAt(h)
		if err != nil {
			b.Fatal(err)
		}
		for _, name := range []string{"lo", podIf} {
			l, err := nh.LinkByName(name)
			if err == nil && name == podIf {
				err = nh.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ends[i].addr.AsSlice(), Mask: net.CIDRMask(30, 32)}})
			}
			if err == nil {
				err = nh.LinkSetUp(l)
			}
			if err != nil {
				nh.Close()
				b.Fatalf("setting up %s in %s: %v", name, ends[i].name, err)
			}
		}
		nh.Close()
	}
	return ends[0], ends[1], linkMTU(b, ends[0].nsPath, podIf)
}

// linkMTU reads the MTU of a link in a namespace.
func linkMTU(b *testing.B, nsPath, name string) int {
	b.Helper()
	var mtu int
	err := netlab.WithNetlink(nsPath, func(h *netlink.Handle) error {
		l, err := h.LinkByName(name)
		if err == nil {
			mtu = l.Attrs().MTU
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return mtu
}

// startInNS starts a program inside a network namespace (nsenter execs it:
// one process) in its own process group, which is killed when ctx ends; the
// kernel kills it if the test binary dies (localcluster.StartCommand: the
// parent-death signal follows the thread that forked).
func startInNS(ctx context.Context, nsPath string, stdout io.Writer, prog string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath, "--", prog}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdout, cmd.Stderr = stdout, stdout
	return cmd, localcluster.StartCommand(cmd)
}

// startIperfServer runs an iperf3 server in the pod's namespace until the
// benchmark ends, and waits until it listens.
func startIperfServer(b *testing.B, p *netPod) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &watchWriter{want: "Server listening", seen: make(chan struct{})}
	cmd, err := startInNS(ctx, p.nsPath, out, "iperf3", "-s", "-p", fmt.Sprint(iperfPort), "--forceflush")
	if err != nil {
		cancel()
		b.Fatalf("starting iperf3 -s in %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cancel()
		<-exited
	})
	select {
	case <-out.seen:
	case <-exited:
		b.Fatalf("iperf3 -s in %s exited: %s", p.name, out.String())
	case <-time.After(10 * time.Second):
		b.Fatalf("iperf3 -s in %s not listening after 10 s: %s", p.name, out.String())
	}
}

// watchWriter keeps what a program writes and closes seen once want is in it.
type watchWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() < 1<<16 {
		w.buf.Write(p)
	}
	if w.seen != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// iperf runs an iperf3 client in from's namespace against to's server and
// returns the receiver's throughput (bit/s) and the sender's retransmits.
func iperf(b *testing.B, from, to *netPod) (float64, int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), time.Duration(iperfSecs+30)*time.Second)
	defer cancel()
	var out strings.Builder
	cmd, err := startInNS(ctx, from.nsPath, &out, "iperf3", "-c", to.addr.String(), "-p", fmt.Sprint(iperfPort),
		"-t", fmt.Sprint(iperfSecs), "-J")
	if err != nil {
		b.Fatalf("starting iperf3 -c in %s: %v", from.name, err)
	}
	werr := cmd.Wait()
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil || werr != nil || r.Error != "" || r.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("iperf3 from %s to %s (%s): %v, %v, %q\n%s", from.name, to.name, to.addr, werr, err, r.Error, out.String())
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits
}

// echoServer answers every byte with itself on echoPort of the pod's address
// until the benchmark ends.
func echoServer(b *testing.B, p *netPod) {
	b.Helper()
	var ln net.Listener
	err := netlab.RunIn(p.nsPath, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.addr, echoPort).String())
		return err
	})
	if err != nil {
		b.Fatalf("listening in %s: %v", p.name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			})
		}
	})
}

// roundTrips connects from's namespace to to's echo server and times
// rttSamples round trips of 1 byte each way, after rttWarmup.
func roundTrips(b *testing.B, from, to *netPod) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	conn, err := netlab.DialIn(ctx, from.nsPath, "tcp", netip.AddrPortFrom(to.addr, echoPort).String())
	if err != nil {
		b.Fatalf("connecting from %s to %s's echo server: %v", from.name, to.name, err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	one := []byte{'x'}
	out := make([]time.Duration, 0, rttSamples)
	for i := range rttWarmup + rttSamples {
		t0 := time.Now()
		if _, err := conn.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, one); err != nil {
			b.Fatal(err)
		}
		if i >= rttWarmup {
			out = append(out, time.Since(t0))
		}
	}
	return out
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}
