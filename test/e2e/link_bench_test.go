package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/simagent"
)

// benchTree starts a root cluster and a hub (a real fornaxd process) with
// metrics on a free port, and returns the tree and the metrics URL.
func benchTree(b *testing.B, hubArgs ...string) (*tree, string) {
	metrics := freeAddr(b)
	tr := newTree(b, append([]string{"--metrics-bind-address", metrics, "--log-level", "warn"}, hubArgs...), localcluster.Options{Name: "root"})
	return tr, "http://" + metrics + "/metrics"
}

// joinMany admits n simulated clusters through the real Join call, from
// several workers each with its own token, and returns their credentials and
// join latencies.
func joinMany(b *testing.B, tr *tree, n int) ([]*join.Credentials, []time.Duration) {
	const workers = 8
	creds := make([]*join.Credentials, n)
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range workers {
		parent, token, hash := tr.token(b, "--uses", strconv.Itoa(n/workers+1))
		wg.Go(func() {
			for i := w; i < n; i += workers {
				name := fmt.Sprintf("sim-%05d", i)
				began := time.Now()
				c, err := join.Join(context.Background(), join.Request{Parent: parent, Token: token, CAHash: hash, Name: name}, "uid-"+name)
				if err != nil {
					failed.Store(err)
					return
				}
				lat[i], creds[i] = time.Since(began), c
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return creds, lat
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// metric reads one un-labelled or summed Prometheus counter or gauge.
func metric(b *testing.B, url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	return sumMetric(resp.Body, name, nil)
}

// metricMatching sums a metric's series whose labels contain every one of
// the given label pairs (`controller="x"`).
func metricMatching(b *testing.B, url, name string, pairs ...string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	return sumMetric(resp.Body, name, func(labels string) bool {
		for _, p := range pairs {
			if !strings.Contains(labels, p) {
				return false
			}
		}
		return true
	})
}

func sumMetric(r io.Reader, name string, match func(labels string) bool) float64 {
	var sum float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue
		}
		if match != nil && !match(labels) {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
			sum += v
		}
	}
	return sum
}

// apiWrites counts the write requests an API server has served, leaving out
// coordination leases: the API server's identity lease and the controllers'
// and nodes' leases renew every few seconds whatever Fornax does.
func apiWrites(b *testing.B, c *localcluster.Cluster) float64 {
	raw, err := c.Client().Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return sumMetric(strings.NewReader(string(raw)), "apiserver_request_total", func(l string) bool {
		if strings.Contains(l, `resource="leases"`) {
			return false
		}
		for _, v := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`, `verb="APPLY"`} {
			if strings.Contains(l, v) {
				return true
			}
		}
		return false
	})
}

// freezer is a TCP relay whose traffic can be stopped without closing
// anything, as when a link silently dies (a cut fibre, a NAT that forgets).
type freezer struct {
	target string
	frozen atomic.Bool
}

func (f *freezer) dial(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", f.target)
	if err != nil {
		return nil, err
	}
	a, b := net.Pipe()
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if err != nil {
				return
			}
			for f.frozen.Load() {
				time.Sleep(10 * time.Millisecond) // hold the bytes: nothing arrives, nothing fails
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	go pump(up, b)
	go pump(b, up)
	return a, nil
}

// BenchmarkLinkDetectAndHeartbeat measures, with one simulated cluster, the
// bytes a heartbeat puts on the wire (keepalive pings disabled, 1 s
// heartbeats) and how long a silently dead link takes to be noticed by the
// hub with the default keepalive (10 s, 5 s timeout).
func BenchmarkLinkDetectAndHeartbeat(b *testing.B) {
	tr, metricsURL := benchTree(b)
	for b.Loop() {
		creds, _ := joinMany(b, tr, 2)

		// Heartbeat size.
		quiet := simagent.New(creds[0])
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- quiet.Run(ctx, simagent.Options{HeartbeatInterval: time.Second, KeepaliveTime: time.Hour, KeepaliveTimeout: time.Hour})
		}()
		<-quiet.Connected
		s0, r0 := quiet.Bytes.Sent.Load(), quiet.Bytes.Received.Load()
		began := time.Now()
		time.Sleep(20 * time.Second) // measurement window: 20 heartbeats
		beats := time.Since(began).Seconds()
		s1, r1 := quiet.Bytes.Sent.Load(), quiet.Bytes.Received.Load()
		cancel()
		if err := <-done; err != nil {
			b.Logf("quiet cluster: %v", err)
		}
		perBeat := float64(s1-s0+r1-r0) / beats

		// Dead-link detection, on both sides of a link that goes silent.
		fr := &freezer{target: tr.addr}
		sim := simagent.New(creds[1])
		ctx, cancel = context.WithCancel(context.Background())
		childDone := make(chan struct{})
		go func() {
			defer close(childDone)
			_ = sim.Run(ctx, simagent.Options{HeartbeatInterval: link.HeartbeatInterval,
				KeepaliveTime: link.KeepaliveTime, KeepaliveTimeout: link.KeepaliveTimeout, Dial: fr.dial})
		}()
		<-sim.Connected
		waitFor(b, 30*time.Second, "the hub to count the child", func(context.Context) (bool, error) {
			return metric(b, metricsURL, "fornax_hub_connected_children") == 1, nil
		})
		fr.frozen.Store(true)
		frozeAt := time.Now()
		waitFor(b, time.Minute, "the hub to notice the dead link", func(context.Context) (bool, error) {
			return metric(b, metricsURL, "fornax_hub_connected_children") == 0, nil
		})
		hubSide := time.Since(frozeAt)
		var childSide time.Duration
		select {
		case <-childDone:
			childSide = time.Since(frozeAt)
		case <-time.After(time.Minute):
		}
		cancel()
		fr.frozen.Store(false)
		<-childDone

		b.ReportMetric(perBeat, "bytes/heartbeat")
		b.ReportMetric(hubSide.Seconds(), "dead-link-detect-s")
		b.ReportMetric(childSide.Seconds(), "child-detect-s")
	}
}
