// Package benchreport turns `go test -bench` output into the project's
// benchmark report: docs/benchmarks.json (a list of {name, value, unit,
// method}) and docs/benchmarks.md (method, machine, the named figures with
// their goals, every measurement, and the peers' published figures). It is
// pure: parsing and rendering only.
package benchreport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// Measurement is one metric of one benchmark, the median of its runs.
type Measurement struct {
	Benchmark string  // full name without the GOMAXPROCS suffix
	Unit      string  // as reported (ReportMetric's unit)
	Value     float64 // median over the runs
	Runs      int
}

// Parse reads benchmark output and returns every metric, one Measurement per
// (benchmark, unit), the median of repeated runs (-count).
func Parse(r io.Reader) ([]Measurement, error) {
	type key struct{ bench, unit string }
	values := map[key][]float64{}
	var order []key
	br := benchfmt.NewReader(r, "bench")
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			continue // a syntax error or a unit line: skipped, as benchstat does
		}
		// benchfmt drops the "Benchmark" prefix; the report keeps Go's names.
		name := "Benchmark" + gomaxprocs.ReplaceAllString(res.Name.String(), "")
		for _, v := range res.Values {
			k, val := key{name, v.Unit}, v.Value
			if v.OrigUnit != "" { // converted by benchfmt (ns/op → sec/op): keep what was reported
				k.unit, val = v.OrigUnit, v.OrigValue
			}
			if _, seen := values[k]; !seen {
				order = append(order, k)
			}
			values[k] = append(values[k], val)
		}
	}
	if err := br.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	out := make([]Measurement, 0, len(order))
	for _, k := range order {
		out = append(out, Measurement{Benchmark: k.bench, Unit: k.unit, Value: median(values[k]), Runs: len(values[k])})
	}
	return out, nil
}

var gomaxprocs = regexp.MustCompile(`-\d+$`)

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Figure is one of the report's named figures: where it comes from and its
// goal.
type Figure struct {
	Name      string // the name in benchmarks.json
	Benchmark string // the benchmark, without the GOMAXPROCS suffix
	Metric    string // the unit it reports
	Unit      string // the unit in the report
	Scale     float64
	Goal      string // e.g. "<= 300"; empty: reported only
	Method    string
}

// Figures are the named figures of the report, in order.
var Figures = []Figure{
	{"delivery_p99_depth1_ms", "BenchmarkCascadeDelivery/interval-1s", "delivery-depth1-p99-ms", "ms", 1, "<= 300",
		"chain root → d1 → d2 → d3 of real clusters; 60 ConfigMap missions, one every 150 ms; Create at the root → the ConfigMap in the cluster (watch), p99"},
	{"delivery_p99_depth3_ms", "BenchmarkCascadeDelivery/interval-1s", "delivery-depth3-p99-ms", "ms", 1, "<= 500", "as above, depth 3"},
	{"status_p99_depth3_interval1s_ms", "BenchmarkCascadeDelivery/interval-1s", "status-depth3-p99-ms", "ms", 1, "<= 2000",
		"a change at depth 3 (drift repaired) → the root's Mission shows it, report interval 1 s at every level, p99 of 10"},
	{"idle_uplink_kbps_per_cluster", "BenchmarkHubScale/1000", "idle-bit/s/cluster", "kbit/s", 0.001, "<= 0.1",
		"1,000 simulated clusters on one real hub, default timers (heartbeat 60 s, keepalive 15 s), 130 s idle window, wire bytes (TLS records) per cluster"},
	{"kubectl_apply_p99_depth1_ms", "BenchmarkCascadeDelivery/interval-1s", "kubectl-apply-depth1-p99-ms", "ms", 1, "",
		"the floor: the same ConfigMaps applied with plain kubectl straight to the depth-1 cluster, invocation → watch, p99"},
	{"kubectl_apply_p99_depth3_ms", "BenchmarkCascadeDelivery/interval-1s", "kubectl-apply-depth3-p99-ms", "ms", 1, "", "as above, straight to the depth-3 cluster"},
	{"resync_bytes_1000_missions_0_changed", "BenchmarkResync", "resync-0-changed-message-bytes", "bytes", 1, "<= 2048",
		"edge holding 1,000 missions, uplink cut (network namespaces) and restored, nothing changed: link messages from restore to converged"},
	{"resync_bytes_1000_missions_1_changed", "BenchmarkResync", "resync-1-changed-message-bytes", "bytes", 1, "", "as above, 1 mission changed during the cut"},
	{"resync_bytes_1000_missions_100_changed", "BenchmarkResync", "resync-100-changed-message-bytes", "bytes", 1, "", "as above, 100 missions changed during the cut"},
	{"partition_detect_s", "BenchmarkResync", "detect-0-s", "s", 1, "", "uplink cut → the root shows the edge Offline, keepalives 10 s + 5 s (the default time is 15 s)"},
	{"resync_converge_s_100_changed", "BenchmarkResync", "resync-100-changed-converge-s", "s", 1, "", "restore → 100 changed missions applied and Ready at the root"},
	{"missions_100_over_256kbps_s", "BenchmarkResync", "100-missions-256kbps-s", "s", 1, "", "100 new missions over an uplink shaped to 256 kbit/s (tbf): first Create → last ConfigMap at the edge"},
	{"hub_max_clusters_connected", "BenchmarkHubScale/10000", "clusters-connected", "clusters", 1, ">= 10000",
		"simulated clusters (4 separate processes, the real join, protocol and TLS) connected to one real hub on a real API server"},
	{"hub_rss_mib_1000_clusters", "BenchmarkHubScale/1000", "hub-MiB", "MiB", 1, "", "hub RSS, 1,000 simulated clusters connected, idle"},
	{"hub_rss_mib_5000_clusters", "BenchmarkHubScale/5000", "hub-MiB", "MiB", 1, "", "as above, 5,000"},
	{"hub_rss_mib_10000_clusters", "BenchmarkHubScale/10000", "hub-MiB", "MiB", 1, "<= 2048", "as above, 10,000"},
	{"hub_cpu_pct_idle_10000_clusters", "BenchmarkHubScale/10000", "hub-cpu-%-idle", "% of a core", 1, "", "hub CPU over the 130 s idle window, 10,000 clusters"},
	{"idle_root_api_writes_per_s_1000_clusters", "BenchmarkHubScale/1000", "api-writes/s", "writes/s", 1, "<= 5", "API writes at the root while idle (leases excluded), 1,000 simulated clusters"},
	{"idle_root_api_writes_per_s_10000_clusters", "BenchmarkHubScale/10000", "api-writes/s", "writes/s", 1, "<= 5", "as above, 10,000"},
	{"all_connected_s_10000_clusters", "BenchmarkHubScale/10000", "all-connected-s", "s", 1, "", "first join → all 10,000 Connected at the root (joins included)"},
	{"mission_to_all_1000_clusters_s", "BenchmarkHubScale/1000", "mission-to-all-s", "s", 1, "", "one mission selecting every cluster: Create → the root's Mission counts all Ready"},
	{"mission_to_all_10000_clusters_s", "BenchmarkHubScale/10000", "mission-to-all-s", "s", 1, "<= 30", "as above, 10,000 clusters"},
	{"mission_on_every_edgecluster_s_10000_clusters", "BenchmarkHubScale/10000", "mission-on-every-edgecluster-s", "s", 1, "", "as above, Create → every EdgeCluster's status shows the mission (the hub's status queue drained)"},
	{"offline_10pct_s_10000_clusters", "BenchmarkHubScale/10000", "offline-10pct-s", "s", 1, "", "1,000 of 10,000 streams closed (the hub settled) → the root shows the 1,000 Offline"},
	{"offline_10pct_in_backlog_s_10000_clusters", "BenchmarkHubScale/10000", "offline-10pct-in-backlog-s", "s", 1, "",
		"1,000 of 10,000 streams closed while the hub writes every EdgeCluster's missions summary (a mission to all changed) → the root shows the 1,000 Offline (link changes go first)"},
	{"storm_all_connected_s_10000_clusters", "BenchmarkHubScale/10000", "storm-all-connected-s", "s", 1, "", "every stream of 10,000 dropped at once → all Connected at the root again"},
	{"storm_peak_hub_rss_mib_10000_clusters", "BenchmarkHubScale/10000", "storm-peak-hub-MiB", "MiB", 1, "", "hub peak RSS during that storm (sampled every 200 ms)"},
	{"agent_rss_mib_idle", "BenchmarkAgent", "agent-MiB-idle", "MiB", 1, "<= 50", "a leaf fornaxd's RSS, idle"},
	{"cluster_start_s", "BenchmarkClusterStart/full-2nodes", "s/start", "s", 1, "", "a real local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok) from nothing to Ready"},
	{"crosscluster_throughput_ratio_vs_veth", "BenchmarkNetwork", "crosscluster-vs-veth-ratio", "× veth", 1, ">= 0.6",
		"TCP throughput pod in cluster a → pod in cluster b (router namespaces, kernel VXLAN over the WAN bridge, all on one host) divided by that of a raw veth pair between two namespaces, same run; iperf3 (Debian), one stream, 5 s, medians of 3 interleaved rounds"},
	{"subnet_to_first_packet_ms", "BenchmarkNetwork", "subnet-to-first-packet-ms", "ms", 1, "<= 2000",
		"subnet created at the root for cluster b → first TCP connection from a pod in cluster a to a pod attached to it (CNI ADD and dial retried every 100 ms), median of 5"},
	{"veth_throughput_gbps", "BenchmarkNetwork", "veth-Gbit/s", "Gbit/s", 1, "",
		"the baseline: iperf3, one TCP stream, 5 s, between two network namespaces joined by one veth pair (MTU 1500), median of 3 rounds"},
	{"same_subnet_throughput_gbps", "BenchmarkNetwork", "same-subnet-Gbit/s", "Gbit/s", 1, "", "as above, pod to pod in one subnet (veth, bridge, veth; MTU 1450)"},
	{"across_subnets_throughput_gbps", "BenchmarkNetwork", "across-subnets-Gbit/s", "Gbit/s", 1, "", "as above, pod to pod across two subnets of one cluster (routed in its router namespace)"},
	{"crosscluster_throughput_gbps", "BenchmarkNetwork", "crosscluster-Gbit/s", "Gbit/s", 1, "", "as above, pod to pod across two clusters (VXLAN between their gateways' router namespaces)"},
	{"crosscluster_rtt_p50_us", "BenchmarkNetwork", "crosscluster-rtt-p50-us", "µs", 1, "",
		"TCP round trip of 1 byte each way on one connection, pod in cluster a ↔ pod in cluster b, 3 × 2,000 after warm-up, p50"},
	{"crosscluster_rtt_p99_us", "BenchmarkNetwork", "crosscluster-rtt-p99-us", "µs", 1, "", "as above, p99"},
}

// Entry is one line of benchmarks.json.
type Entry struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Method string  `json:"method"`
}

// Entries returns the named figures found in ms, then every measurement as
// "<benchmark>:<unit>", for benchmarks.json.
func Entries(ms []Measurement) []Entry {
	var out []Entry
	for _, f := range Figures {
		if m, ok := find(ms, f.Benchmark, f.Metric); ok {
			out = append(out, Entry{f.Name, m.Value * f.Scale, f.Unit, f.Method})
		}
	}
	for _, m := range ms {
		out = append(out, Entry{m.Benchmark + ":" + m.Unit, m.Value, m.Unit, fmt.Sprintf("median of %d runs", m.Runs)})
	}
	return out
}

func find(ms []Measurement, bench, unit string) (Measurement, bool) {
	for _, m := range ms {
		if m.Benchmark == bench && m.Unit == unit {
			return m, true
		}
	}
	return Measurement{}, false
}

// JSON renders benchmarks.json.
func JSON(ms []Measurement) ([]byte, error) {
	b, err := json.MarshalIndent(Entries(ms), "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Machine describes where the benchmarks ran.
type Machine struct {
	Date, CPU, Cores, Memory, Kernel, GoVersion string
	// Note says where the results come from, if not one whole make bench.
	Note string
}

// Markdown renders benchmarks.md.
func Markdown(ms []Measurement, m Machine) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by hack/benchreport, which `make bench` runs, on %s. Machine: %s, %s cores, %s memory, kernel %s, %s.\n",
		m.Date, m.CPU, m.Cores, m.Memory, m.Kernel, m.GoVersion)
	if m.Note != "" {
		fmt.Fprintf(&b, "%s\n", m.Note)
	}
	fmt.Fprintf(&b, "Every value is the median of the runs in its input (the machine is noisy: compare ratios\nwithin one run). Method per figure below; the benchmarks' own doc comments say more.\n\n")
	fmt.Fprintf(&b, "## Named figures\n\n| name | value | goal | met | method |\n|---|---|---|---|---|\n")
	for _, f := range Figures {
		mm, ok := find(ms, f.Benchmark, f.Metric)
		if !ok {
			fmt.Fprintf(&b, "| `%s` | not measured in this run | %s | — | %s |\n", f.Name, dash(f.Goal), f.Method)
			continue
		}
		v := mm.Value * f.Scale
		fmt.Fprintf(&b, "| `%s` | %s %s | %s | %s | %s |\n", f.Name, num(v), f.Unit, dash(f.Goal), met(v, f.Goal), f.Method)
	}
	fmt.Fprintf(&b, "\n## Every measurement\n\n| benchmark | value | unit | runs |\n|---|---|---|---|\n")
	sorted := slices.Clone(ms)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Benchmark < sorted[j].Benchmark })
	for _, x := range sorted {
		fmt.Fprintf(&b, "| %s | %s | %s | %d |\n", x.Benchmark, num(x.Value), x.Unit, x.Runs)
	}
	fmt.Fprintf(&b, "\n%s", peers)
	return b.Bytes()
}

const peers = `## Peers' published figures

| system | figure |
|---|---|
| Karmada | 100 member clusters: resource distribution p99 1.3 s (push) / 0.99 s (pull) |
| Open Cluster Management / RHACM | 3,500 managed clusters per hub |
| KubeEdge | 100,000 edge nodes on five 12-core cloudcores, about 0.25 kbit/s uplink per node |
| original Fornax design | polled every second, heartbeat every 10 s, at most 1,000 connections per hub |
`

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
}

// met says whether v meets a goal of the form "<= x" or ">= x".
func met(v float64, goal string) string {
	var x float64
	switch {
	case goal == "":
		return "—"
	case strings.HasPrefix(goal, "<="):
		if _, err := fmt.Sscan(strings.TrimPrefix(goal, "<="), &x); err == nil && v <= x {
			return "yes"
		}
	case strings.HasPrefix(goal, ">="):
		if _, err := fmt.Sscan(strings.TrimPrefix(goal, ">="), &x); err == nil && v >= x {
			return "yes"
		}
	}
	return "**no**"
}
