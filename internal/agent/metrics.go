package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	applyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fornax_agent_apply_duration_seconds",
		Help:    "Time to apply one mission's resources (server-side apply of each, then their readiness).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms to 41 s
	})
	applies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_agent_applies_total",
		Help: "Mission applies, by result (ok, failed). An unchanged mission judged from the watch is not applied.",
	}, []string{"result"})
	driftCorrections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fornax_agent_drift_corrections_total",
		Help: "Applied objects found changed or deleted by someone else and reverted.",
	})
	orphanedMissions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fornax_agent_orphaned_missions",
		Help: "Missions held from the parent that the parent does not know any more, counting down their grace.",
	})
)

func init() {
	metrics.Registry.MustRegister(applyDuration, applies, driftCorrections, orphanedMissions)
}
