package benchreport

import (
	"encoding/json"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/fornax-edge/fornax/test/e2e
cpu: AMD EPYC
BenchmarkCascadeDelivery/interval-1s-2   	       1	41299832236 ns/op	        29.18 delivery-depth1-p50-ms	        53.52 delivery-depth1-p99-ms	        75.44 delivery-depth3-p99-ms	      1043 status-depth3-p99-ms
BenchmarkCascadeDelivery/interval-1s-2   	       1	41299832236 ns/op	        31.00 delivery-depth1-p50-ms	        61.00 delivery-depth1-p99-ms	       601.00 delivery-depth3-p99-ms	      1100 status-depth3-p99-ms
BenchmarkCascadeDelivery/interval-1s-2   	       1	41299832236 ns/op	        30.00 delivery-depth1-p50-ms	        57.00 delivery-depth1-p99-ms	        80.00 delivery-depth3-p99-ms	      1000 status-depth3-p99-ms
BenchmarkHubScale/1000-2   	       1	1 ns/op	        77.0 idle-bit/s/cluster	 0 api-writes/s
--- BENCH: BenchmarkCascadeDelivery/interval-1s-2
    cascade_bench_test.go:197: a log line
PASS
ok  	github.com/fornax-edge/fornax/test/e2e	78.809s
`

func TestParseTakesTheMedianPerMetric(t *testing.T) {
	ms, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Measurement{}
	for _, m := range ms {
		got[m.Benchmark+" "+m.Unit] = m
	}
	for k, want := range map[string]float64{
		"BenchmarkCascadeDelivery/interval-1s delivery-depth1-p99-ms": 57,
		"BenchmarkCascadeDelivery/interval-1s delivery-depth3-p99-ms": 80, // one outlier does not move the median
		"BenchmarkCascadeDelivery/interval-1s status-depth3-p99-ms":   1043,
		"BenchmarkHubScale/1000 idle-bit/s/cluster":                   77,
	} {
		if m, ok := got[k]; !ok || m.Value != want {
			t.Errorf("%s = %+v, want %v", k, m, want)
		}
	}
	if got["BenchmarkCascadeDelivery/interval-1s delivery-depth1-p99-ms"].Runs != 3 {
		t.Errorf("runs not counted: %+v", got)
	}
}

func TestReportNamesFiguresAndGoals(t *testing.T) {
	ms, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := JSON(ms)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	byName := map[string]Entry{}
	for _, e := range entries {
		if e.Name == "" || e.Unit == "" || e.Method == "" {
			t.Errorf("incomplete entry %+v", e)
		}
		byName[e.Name] = e
	}
	if e := byName["delivery_p99_depth3_ms"]; e.Value != 80 || e.Unit != "ms" {
		t.Errorf("delivery_p99_depth3_ms = %+v", e)
	}
	if e := byName["idle_uplink_kbps_per_cluster"]; e.Value != 0.077 || e.Unit != "kbit/s" {
		t.Errorf("idle_uplink_kbps_per_cluster = %+v (bit/s scaled to kbit/s)", e)
	}
	md := string(Markdown(ms, Machine{Date: "2026-11-21", CPU: "AMD EPYC", Cores: "2", Memory: "24 GiB", Kernel: "6.1", GoVersion: "go1.26"}))
	for _, want := range []string{
		"| `delivery_p99_depth3_ms` | 80.00 ms | <= 500 | yes |",
		"| `status_p99_depth3_interval1s_ms` | 1043 ms | <= 2000 | yes |",
		"| `resync_bytes_1000_missions_0_changed` | not measured in this run |",
		"Karmada",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("benchmarks.md lacks %q:\n%s", want, md)
		}
	}
	if met(3000, "<= 2000") != "**no**" || met(10000, ">= 10000") != "yes" {
		t.Error("goal check wrong")
	}
}

func TestNetworkFigures(t *testing.T) {
	const out = "BenchmarkNetwork-2   	       1	61520999050 ns/op	        9.414 crosscluster-Gbit/s	        35.98 crosscluster-rtt-p50-us	        94.34 crosscluster-rtt-p99-us	         0.7543 crosscluster-vs-veth-ratio	       100.5 subnet-to-first-packet-ms	        12.48 veth-Gbit/s\n"
	ms, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	md := string(Markdown(ms, Machine{}))
	for _, want := range []string{
		"| `crosscluster_throughput_ratio_vs_veth` | 0.7543 × veth | >= 0.6 | yes |",
		"| `subnet_to_first_packet_ms` | 100 ms | <= 2000 | yes |",
		"| `veth_throughput_gbps` | 12.48 Gbit/s | — | — |",
		"| `crosscluster_throughput_gbps` | 9.41 Gbit/s | — | — |",
		"| `crosscluster_rtt_p99_us` | 94.34 µs | — | — |",
		"| `same_subnet_throughput_gbps` | not measured in this run |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("benchmarks.md lacks %q:\n%s", want, md)
		}
	}
}
