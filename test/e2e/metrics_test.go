package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// scrape reads a /metrics endpoint with the Prometheus text parser.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeVia(t, http.DefaultClient, url)
}

// scrapeVia is scrape with a given HTTP client (one that dials into a
// site's network namespace).
func scrapeVia(t testing.TB, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// sample sums the samples of a family whose labels include all of want (for
// a histogram: the number of observations).
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount()) // how many were observed
		}
	}
	return sum
}

// linkCounters are one agent's uplink counters (role child).
type linkCounters struct {
	down, up             float64 // wire bytes received from / sent to the parent
	heartbeats, hbBytes  float64 // heartbeat frames sent and their encoded bytes
	objects, objectBytes float64 // object batches received and their encoded bytes
}

func readLink(t testing.TB, url string) linkCounters {
	f := scrape(t, url)
	child := func(dir string) map[string]string { return map[string]string{"role": "child", "direction": dir} }
	typ := func(dir, typ string) map[string]string {
		return map[string]string{"role": "child", "direction": dir, "type": typ}
	}
	return linkCounters{
		down:        sample(f, "fornax_link_wire_bytes_total", child("received")),
		up:          sample(f, "fornax_link_wire_bytes_total", child("sent")),
		heartbeats:  sample(f, "fornax_link_frames_total", typ("sent", "heartbeat")),
		hbBytes:     sample(f, "fornax_link_frame_bytes_total", typ("sent", "heartbeat")),
		objects:     sample(f, "fornax_link_frames_total", typ("received", "objects")),
		objectBytes: sample(f, "fornax_link_frame_bytes_total", typ("received", "objects")),
	}
}

func (c linkCounters) minus(o linkCounters) linkCounters {
	return linkCounters{c.down - o.down, c.up - o.up, c.heartbeats - o.heartbeats, c.hbBytes - o.hbBytes, c.objects - o.objects, c.objectBytes - o.objectBytes}
}

// TestMetricsAndHealth scrapes a hub's and an agent's /metrics with the
// Prometheus text parser after a mission went through and its drift was
// corrected, and asks both for /healthz and /readyz: the figures an
// operator's dashboards and probes rely on.
func TestMetricsAndHealth(t *testing.T) {
	hubMetrics, hubHealth := freeAddr(t), freeAddr(t)
	tr := newTree(t, append([]string{"--metrics-bind-address", hubMetrics, "--health-bind-address", hubHealth}, keepaliveArgs...),
		localcluster.Options{Name: "root"}, localcluster.Options{Name: "m1"})
	parent, token, hash := tr.token(t)
	fornaxctl(t, "join", "--kubeconfig", tr.edges["m1"].Kubeconfig, "--parent", parent, "--token", token, "--ca-hash", hash, "--name", "m1")
	agentMetrics, agentHealth := freeAddr(t), freeAddr(t)
	tr.startAgent(t, "m1", "--metrics-bind-address", agentMetrics, "--health-bind-address", agentHealth)
	ctx := t.Context()
	if _, err := tr.root.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "partition"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := tr.rootCli.Create(ctx, cm(t, "watched", "1", edgev1alpha1.Placement{Clusters: []string{"m1"}})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the mission Ready at the root", func(ctx context.Context) (bool, error) {
		return missionReady(ctx, tr.rootCli, "watched")
	})
	// Drift: the ConfigMap deleted by hand at the edge comes back, counted.
	if err := tr.edges["m1"].Client().CoreV1().ConfigMaps("partition").Delete(ctx, "watched", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the agent to count the drift it corrected", func(context.Context) (bool, error) {
		return sample(scrape(t, "http://"+agentMetrics+"/metrics"), "fornax_agent_drift_corrections_total", nil) >= 1, nil
	})

	hub, agent := scrape(t, "http://"+hubMetrics+"/metrics"), scrape(t, "http://"+agentMetrics+"/metrics")
	for _, m := range []struct {
		fams  map[string]*dto.MetricFamily
		name  string
		label map[string]string
		min   float64
	}{
		{hub, "fornax_hub_connected_children", nil, 1},
		{hub, "fornax_link_wire_bytes_total", map[string]string{"role": "parent", "direction": "received"}, 1},
		{hub, "fornax_link_wire_bytes_total", map[string]string{"role": "parent", "direction": "sent"}, 1},
		{hub, "fornax_link_frames_total", map[string]string{"role": "parent", "direction": "sent", "type": "objects"}, 1},
		{hub, "fornax_link_frames_total", map[string]string{"role": "parent", "direction": "received", "type": "report"}, 1},
		{hub, "fornax_hub_report_bytes", map[string]string{"kind": "full"}, 1}, // the first report after a connect
		{hub, "fornax_hub_status_writes_total", nil, 1},
		{hub, "workqueue_depth", map[string]string{"name": "edgecluster-status"}, 0},
		{agent, "fornax_link_frame_bytes_total", map[string]string{"role": "child", "direction": "sent", "type": "report"}, 1},
		{agent, "fornax_link_frames_total", map[string]string{"role": "child", "direction": "received", "type": "objects"}, 1},
		{agent, "fornax_agent_applies_total", map[string]string{"result": "ok"}, 1},
		{agent, "fornax_agent_apply_duration_seconds", nil, 1},
		{agent, "fornax_agent_drift_corrections_total", nil, 1},
		{agent, "workqueue_depth", nil, 0},
	} {
		if m.fams[m.name] == nil {
			t.Errorf("metric %s missing", m.name)
		} else if got := sample(m.fams, m.name, m.label); got < m.min {
			t.Errorf("metric %s%v = %v, want at least %v", m.name, m.label, got, m.min)
		}
	}
	for _, addr := range []string{hubHealth, agentHealth} {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Errorf("GET %s%s: %v", addr, path, err)
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s%s: %s", addr, path, resp.Status)
			}
		}
	}
}
