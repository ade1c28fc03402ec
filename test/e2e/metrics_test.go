package e2e

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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

// sample sums the samples of a family whose labels include all of want.
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
