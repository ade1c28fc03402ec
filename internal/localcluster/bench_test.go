package localcluster_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fornax-edge/fornax/internal/localcluster"
)

// BenchmarkClusterStart measures how long a cluster takes from Start to ready
// (API server /readyz; with a control plane, controllers healthy and every
// node Ready) and the resident memory of its processes right after.
func BenchmarkClusterStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts localcluster.Options
	}{
		{"apiserver-etcd", localcluster.Options{}},
		{"apiserver-kine", localcluster.Options{Flavor: localcluster.FlavorK3s}},
		{"full-2nodes", localcluster.Options{NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 2}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var startTotal time.Duration
			var apiRSS, totalRSS uint64
			runs := 0
			for b.Loop() {
				runs++
				opts := bc.opts
				opts.Name = "bench"
				opts.Dir = filepath.Join(b.TempDir(), "bench")
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				began := time.Now()
				c, err := localcluster.Start(ctx, opts)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				startTotal += time.Since(began)
				rss, err := c.RSS()
				if err != nil {
					b.Fatal(err)
				}
				for name, v := range rss {
					totalRSS += v
					if strings.HasPrefix(name, "kube-apiserver") {
						apiRSS += v
					}
				}
				b.StopTimer()
				if err := c.Stop(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			n := float64(runs)
			b.ReportMetric(startTotal.Seconds()/n, "s/start")
			b.ReportMetric(float64(apiRSS)/n/(1<<20), "MiB-apiserver-rss")
			b.ReportMetric(float64(totalRSS)/n/(1<<20), "MiB-total-rss")
		})
	}
}
