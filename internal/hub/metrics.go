package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fornax_hub_status_writes_total",
		Help: "EdgeCluster status writes to this hub's API server.",
	})
	framesReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_hub_frames_received_total",
		Help: "Frames received from children, by type.",
	}, []string{"type"})
	joins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_hub_joins_total",
		Help: "Join requests, by result (accepted, refused).",
	}, []string{"result"})
	connectedChildren = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "fornax_hub_connected_children",
		Help: "Children with an open stream.",
	})
	objectsSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fornax_hub_objects_sent_total",
		Help: "Objects (missions, VPCs, Subnets, Gateways and their deletions) sent down to children.",
	})
	fullReports = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fornax_hub_full_reports_total",
		Help: "Full reports received (a child or this hub lost its state, or a resync was asked for); incremental ones are the rule.",
	})
	reportBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fornax_hub_report_bytes",
		Help: "Size of the reports received from children, by kind: full (a resync: everything re-listed after a restart or a disagreement) or incremental (what changed).",
		// 64 B (one changed fact) to 4 MiB (a subtree of thousands of clusters re-listed).
		Buckets: prometheus.ExponentialBuckets(64, 4, 9),
	}, []string{"kind"})
	protocolErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fornax_hub_protocol_errors_total",
		Help: "Streams closed because a child sent an invalid frame.",
	})
)

func init() {
	metrics.Registry.MustRegister(statusWrites, framesReceived, joins, connectedChildren, objectsSent, protocolErrors, fullReports, reportBytes)
}
