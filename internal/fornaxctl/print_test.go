package fornaxctl

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-d)); return &t }

func cluster(name, parent, path string, depth int32, state edgev1alpha1.ConnectionState, ready metav1.ConditionStatus, distro string, nodes, nodesReady int32) edgev1alpha1.EdgeCluster {
	connected := metav1.ConditionTrue
	reason := "LinkUp"
	if state != edgev1alpha1.StateConnected {
		connected, reason = metav1.ConditionFalse, "LinkDown"
	}
	return edgev1alpha1.EdgeCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: *ago(2 * time.Hour),
			Labels: map[string]string{"topology.fornax.io/region": "eu", "edge.fornax.io/name": name}},
		Status: edgev1alpha1.EdgeClusterStatus{Parent: parent, Path: path, Depth: depth, State: state,
			KubernetesVersion: "v1.37.1", Distro: edgev1alpha1.Distro(distro), AgentVersion: "v0.3.0",
			Nodes:             &edgev1alpha1.NodeSummary{Total: nodes, Ready: nodesReady},
			Missions:          &edgev1alpha1.MissionSummary{Total: 2, Ready: 2},
			LastHeartbeatTime: ago(3 * time.Second), LastReportTime: ago(40 * time.Second),
			Conditions: []metav1.Condition{
				{Type: "Connected", Status: connected, Reason: reason, Message: "link " + reason, LastTransitionTime: *ago(time.Hour)},
				{Type: "Ready", Status: ready, Reason: "NodesReady", Message: "nodes ready", LastTransitionTime: *ago(time.Hour)},
			}},
	}
}

func tree() *edgev1alpha1.EdgeClusterList {
	offline := cluster("us", "root", "root/us", 1, edgev1alpha1.StateOffline, metav1.ConditionUnknown, "k8s", 1, 1)
	offline.Status.LastHeartbeatTime = ago(5 * time.Minute)
	return &edgev1alpha1.EdgeClusterList{Items: []edgev1alpha1.EdgeCluster{
		cluster("eu", "root", "root/eu", 1, edgev1alpha1.StateConnected, metav1.ConditionTrue, "k8s", 1, 1),
		cluster("dublin", "eu", "root/eu/dublin", 2, edgev1alpha1.StateConnected, metav1.ConditionTrue, "k8s", 2, 2),
		cluster("factory-7", "eu", "root/eu/factory-7", 2, edgev1alpha1.StateConnected, metav1.ConditionFalse, "k3s", 2, 0),
		offline,
	}}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/fornaxctl -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

func TestPrintedTables(t *testing.T) {
	var b bytes.Buffer
	printTree(&b, tree(), now)
	golden(t, "tree", b.Bytes())

	for _, output := range []string{"", "wide"} {
		b.Reset()
		if err := printClusters(&b, tree(), output, now); err != nil {
			t.Fatal(err)
		}
		golden(t, "clusters-"+map[string]string{"": "table", "wide": "wide"}[output], b.Bytes())
	}

	m := edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shop", Generation: 2},
		Status: edgev1alpha1.MissionStatus{ObservedGeneration: 2,
			Summary:    edgev1alpha1.MissionSummaryCounts{Targeted: 3, Applied: 2, Ready: 1, Failed: 1},
			Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "Failed", Message: "1 of 3 clusters failed"}},
			Clusters: []edgev1alpha1.ClusterStatus{
				{Cluster: "factory-7", Phase: edgev1alpha1.PhaseFailed, Generation: 2, Message: "Deployment/shop-web: image pull", LastUpdateTime: ago(time.Minute)},
				{Cluster: "dublin", Phase: edgev1alpha1.PhaseReady, Generation: 2, DriftCorrections: 3, LastUpdateTime: ago(10 * time.Minute)},
				{Cluster: "eu", Phase: edgev1alpha1.PhaseApplied, Generation: 2, LastUpdateTime: ago(5 * time.Second)},
			}}}
	m.CreationTimestamp = *ago(30 * time.Minute)
	m.Spec.Placement = edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.fornax.io/region": "eu"}}, Exclude: []string{"eu"}}
	m.Spec.Resources = make([]runtime.RawExtension, 5)
	all := m
	all.Name, all.Spec.Placement = "telemetry", edgev1alpha1.Placement{}
	for _, wide := range []bool{false, true} {
		b.Reset()
		if err := printMissions(&b, []edgev1alpha1.Mission{m, all}, wide, now); err != nil {
			t.Fatal(err)
		}
		golden(t, map[bool]string{false: "missions-table", true: "missions-wide"}[wide], b.Bytes())
	}
	b.Reset()
	if err := printMissionStatus(&b, &m, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "mission-status", b.Bytes())

	ec := tree().Items[2]
	ec.Annotations = map[string]string{"edge.fornax.io/inherited-labels": "topology.fornax.io/region"}
	ec.Status.Allocatable = map[string]resource.Quantity{"cpu": resource.MustParse("8"), "memory": resource.MustParse("32Gi"), "pods": resource.MustParse("220")}
	ec.Status.OrphanedMissions = []edgev1alpha1.OrphanedMission{{Namespace: "shop", Name: "old", Since: *ago(10 * time.Minute), DeleteAfter: metav1.NewTime(now.Add(50 * time.Minute))}}
	events := []corev1.Event{
		{Type: "Normal", Reason: "Connected", Message: "link up", EventTime: metav1.NewMicroTime(now.Add(-time.Hour))},
		{Type: "Warning", Reason: "NoReadyNodes", Message: "Ready is False: no node is Ready", EventTime: metav1.NewMicroTime(now.Add(-2 * time.Minute))},
	}
	b.Reset()
	if err := describeCluster(&b, &ec, []edgev1alpha1.Mission{m}, events, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "describe-cluster", b.Bytes())
}

// init --print without --endpoint would print a hub whose serving
// certificate lacks the name children dial: refused, saying what to add.
func TestInitPrintNeedsTheEndpoint(t *testing.T) {
	cmd := NewCommand()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"init", "--print"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--print needs --endpoint") {
		t.Fatalf("init --print: %v; want the need for --endpoint", err)
	}
	cmd = NewCommand()
	out.Reset()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"init", "--print", "--middle", "--endpoint", "eu.example.com:7443"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--advertise=eu.example.com", "name: fornax-agent-apply", "name: fornax-hub-webhook"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("init --print --middle lacks %q", want)
		}
	}
}
