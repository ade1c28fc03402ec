package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// One API server (no controllers are needed to validate objects) serves
// every test of this package.
var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, &localcluster.Options{Name: "api"}, func(c *localcluster.Cluster) error {
		cluster = c
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return install.API(ctx, c.RESTConfig())
	}))
}

var (
	edgeClusters = schema.GroupVersionResource{Group: "edge.fornax.io", Version: "v1alpha1", Resource: "edgeclusters"}
	missions     = schema.GroupVersionResource{Group: "edge.fornax.io", Version: "v1alpha1", Resource: "missions"}
)

func dyn(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func obj(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatalf("test object does not parse: %v\n%s", err, y)
	}
	return u
}

const configMap = `
    - apiVersion: v1
      kind: ConfigMap
      metadata: {name: settings}
      data: {mode: edge}`

func mission(name, spec string) string {
	return fmt.Sprintf("apiVersion: edge.fornax.io/v1alpha1\nkind: Mission\nmetadata: {name: %s, namespace: default}\nspec:\n%s", name, spec)
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name    string
		gvr     schema.GroupVersionResource
		object  string
		wantErr []string // substrings of the error; empty means accepted
	}{
		{
			name: "minimal edge cluster", gvr: edgeClusters,
			object: "apiVersion: edge.fornax.io/v1alpha1\nkind: EdgeCluster\nmetadata: {name: berlin-3, labels: {topology.fornax.io/region: eu}}",
		},
		{
			name: "edge cluster name that is not a DNS label", gvr: edgeClusters,
			object:  "apiVersion: edge.fornax.io/v1alpha1\nkind: EdgeCluster\nmetadata: {name: berlin.site-3}",
			wantErr: []string{"metadata.name must be a DNS-1123 label"},
		},
		{
			name: "minimal mission", gvr: missions,
			object: mission("minimal", "  resources:"+configMap),
		},
		{
			name: "mission with every placement field", gvr: missions,
			object: mission("full", `  deletionPolicy: Orphan
  placement:
    clusters: [berlin-3, munich-1]
    clusterSelector:
      matchLabels: {topology.fornax.io/region: eu}
      matchExpressions: [{key: edge.fornax.io/distro, operator: In, values: [k3s]}]
    subtrees: [eu]
    exclude: [paris-2]
  resources:`+configMap+`
    - apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web, labels: {app: web}}
      spec:
        replicas: 2
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec: {containers: [{name: web, image: nginx}]}`),
		},
		{
			name: "mission without resources", gvr: missions,
			object:  mission("empty", "  resources: []"),
			wantErr: []string{"spec.resources", "at least 1 item"},
		},
		{
			name: "mission resource without kind", gvr: missions,
			object:  mission("nokind", "  resources:\n    - apiVersion: v1\n      metadata: {name: x}"),
			wantErr: []string{"spec.resources[*].apiVersion and kind are required"},
		},
		{
			name: "mission resource without name", gvr: missions,
			object:  mission("noname", "  resources:\n    - apiVersion: v1\n      kind: ConfigMap\n      metadata: {labels: {a: b}}"),
			wantErr: []string{"spec.resources[*].metadata.name is required", "ConfigMap"},
		},
		{
			name: "mission resource with its own namespace", gvr: missions,
			object:  mission("ns", "  resources:\n    - apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: x, namespace: kube-system}"),
			wantErr: []string{"spec.resources[*].metadata.namespace must not be set", "ConfigMap/x"},
		},
		{
			name: "mission carrying a mission", gvr: missions,
			object:  mission("nested", "  resources:\n    - apiVersion: edge.fornax.io/v1alpha1\n      kind: Mission\n      metadata: {name: inner}"),
			wantErr: []string{"spec.resources[*].apiVersion", "cannot carry Fornax's own", "Mission"},
		},
		{
			name: "mission with an unknown deletion policy", gvr: missions,
			object:  mission("policy", "  deletionPolicy: Keep\n  resources:"+configMap),
			wantErr: []string{"spec.deletionPolicy", `Unsupported value: "Keep"`},
		},
		{
			name: "mission placing on a malformed cluster name", gvr: missions,
			object:  mission("badname", "  placement: {clusters: [Berlin_3]}\n  resources:"+configMap),
			wantErr: []string{"spec.placement.clusters[0]", "should match"},
		},
		{
			name: "mission both selecting and excluding a cluster", gvr: missions,
			object:  mission("both", "  placement: {clusters: [a, b], exclude: [b]}\n  resources:"+configMap),
			wantErr: []string{"spec.placement", "both in clusters and in exclude"},
		},
		{
			name: "mission naming a cluster twice", gvr: missions,
			object:  mission("dup", "  placement: {clusters: [a, a]}\n  resources:"+configMap),
			wantErr: []string{"spec.placement.clusters[1]", "Duplicate value"},
		},
	}
	d := dyn(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := obj(t, tc.object)
			var ri dynamic.ResourceInterface = d.Resource(tc.gvr)
			if ns := u.GetNamespace(); ns != "" {
				ri = d.Resource(tc.gvr).Namespace(ns)
			}
			_, err := ri.Create(t.Context(), u, metav1.CreateOptions{})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("valid object rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("invalid object accepted; want an error mentioning %q", tc.wantErr)
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("error is %v, want an Invalid (422) error", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestStatusValidation(t *testing.T) {
	c := newClient(t)
	ec := &edgev1alpha1.EdgeCluster{ObjectMeta: metav1.ObjectMeta{Name: "status-check"}}
	if err := c.Create(t.Context(), ec); err != nil {
		t.Fatal(err)
	}
	ec.Status.State = "Bogus"
	err := c.Status().Update(t.Context(), ec)
	if err == nil || !strings.Contains(err.Error(), "status.state") {
		t.Fatalf("status with an unknown state: got %v, want an error naming status.state", err)
	}
}

func newClient(t *testing.T) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cluster.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTypedRoundTrip writes typed objects and reads them back: the Go types,
// their JSON tags and the CRD schema agree (nothing is pruned or defaulted away).
func TestTypedRoundTrip(t *testing.T) {
	c := newClient(t)
	m := &edgev1alpha1.Mission{
		ObjectMeta: metav1.ObjectMeta{Name: "roundtrip", Namespace: "default"},
		Spec: edgev1alpha1.MissionSpec{
			Resources: []runtime.RawExtension{{
				Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"k":"v"}}`),
			}},
			Placement: edgev1alpha1.Placement{
				ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.fornax.io/site": "berlin-3"}},
			},
		},
	}
	if err := c.Create(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got := &edgev1alpha1.Mission{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(m), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.DeletionPolicy != edgev1alpha1.DeletionPolicyDelete {
		t.Errorf("deletionPolicy defaulted to %q, want Delete", got.Spec.DeletionPolicy)
	}
	var res map[string]any
	if err := yaml.Unmarshal(got.Spec.Resources[0].Raw, &res); err != nil {
		t.Fatal(err)
	}
	if res["data"].(map[string]any)["k"] != "v" {
		t.Errorf("embedded resource lost its data: %s", got.Spec.Resources[0].Raw)
	}
	if got.Spec.Placement.ClusterSelector.MatchLabels["topology.fornax.io/site"] != "berlin-3" {
		t.Errorf("placement lost: %+v", got.Spec.Placement)
	}

	now := metav1.Now()
	got.Status = edgev1alpha1.MissionStatus{
		ObservedGeneration: got.Generation,
		Summary:            edgev1alpha1.MissionSummaryCounts{Targeted: 3, Applied: 3, Ready: 2, Unknown: 1},
		Clusters: []edgev1alpha1.ClusterStatus{
			{Cluster: "a", Phase: edgev1alpha1.PhaseReady, Generation: 1, LastUpdateTime: &now,
				Resources: []edgev1alpha1.ResourceStatus{{APIVersion: "v1", Kind: "ConfigMap", Name: "cfg", Namespace: "default", Status: "Current"}}},
			{Cluster: "b", Phase: edgev1alpha1.PhaseUnknown, Message: "unreachable", LastUpdateTime: &now},
		},
	}
	if err := c.Status().Update(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	back := &edgev1alpha1.Mission{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(m), back); err != nil {
		t.Fatal(err)
	}
	if back.Status.Summary != got.Status.Summary || len(back.Status.Clusters) != 2 ||
		back.Status.Clusters[0].Resources[0].Status != "Current" {
		t.Errorf("status did not round-trip: %+v", back.Status)
	}
}

// TestKubectlPrinterColumns runs the pinned kubectl, as a user would, and
// checks that the columns tell the story.
func TestKubectlPrinterColumns(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	ec := &edgev1alpha1.EdgeCluster{ObjectMeta: metav1.ObjectMeta{Name: "factory-7"}}
	if err := c.Create(ctx, ec); err != nil {
		t.Fatal(err)
	}
	seen := metav1.NewTime(time.Now().Add(-3 * time.Minute))
	ec.Status = edgev1alpha1.EdgeClusterStatus{
		Parent: "eu", Path: "root/eu/factory-7", Depth: 2, State: edgev1alpha1.StateConnected,
		KubernetesVersion: "v1.37.1+k3s1", Distro: edgev1alpha1.DistroK3s,
		Nodes:             &edgev1alpha1.NodeSummary{Total: 3, Ready: 2},
		Missions:          &edgev1alpha1.MissionSummary{Total: 5, Ready: 5},
		LastHeartbeatTime: &seen,
		Conditions: []metav1.Condition{{Type: edgev1alpha1.EdgeClusterReady, Status: metav1.ConditionTrue,
			Reason: "NodesReady", Message: "2 of 3 nodes Ready", LastTransitionTime: seen}},
	}
	if err := c.Status().Update(ctx, ec); err != nil {
		t.Fatal(err)
	}
	m := &edgev1alpha1.Mission{
		ObjectMeta: metav1.ObjectMeta{Name: "web-app", Namespace: "default"},
		Spec: edgev1alpha1.MissionSpec{Resources: []runtime.RawExtension{{
			Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web"}}`)}}},
	}
	if err := c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Status.Summary = edgev1alpha1.MissionSummaryCounts{Targeted: 7, Applied: 6, Ready: 4, Failed: 2, Unknown: 1}
	if err := c.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}

	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, localcluster.BinKubectl), append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	out := kubectl("get", "edgeclusters,missions", "-n", "default")
	t.Logf("kubectl get edgeclusters,missions -n default:\n%s", out)
	wantRow(t, out, []string{"NAME", "PARENT", "STATE", "READY", "VERSION", "DISTRO", "NODES", "NODES-READY", "LAST-SEEN", "AGE"},
		[]string{"edgecluster.edge.fornax.io/factory-7", "eu", "Connected", "True", "v1.37.1+k3s1", "k3s", "3", "2", "3m"})
	wantRow(t, out, []string{"NAME", "TARGETED", "READY", "FAILED", "UNKNOWN", "AGE"},
		[]string{"mission.edge.fornax.io/web-app", "7", "4", "2", "1"})

	wide := kubectl("get", "ec", "factory-7", "-o", "wide")
	wantRow(t, wide, []string{"NAME", "PARENT", "DEPTH", "STATE"}, []string{"factory-7", "eu", "2", "Connected"})
	if !strings.Contains(wide, "root/eu/factory-7") {
		t.Errorf("wide output lacks the path column:\n%s", wide)
	}
	// The short name and the category work too.
	if out := kubectl("get", "mis", "-n", "default", "web-app"); !strings.Contains(out, "web-app") {
		t.Errorf("short name mis: %s", out)
	}
	if out := kubectl("get", "fornax", "-A"); !strings.Contains(out, "factory-7") || !strings.Contains(out, "web-app") {
		t.Errorf("category fornax lists:\n%s", out)
	}
	if v := kubectl("version", "--client"); !strings.Contains(v, "Client Version: "+serverVersion(t)) {
		t.Errorf("kubectl version --client = %q, want the pinned version %s", v, serverVersion(t))
	}
}

func serverVersion(t *testing.T) string {
	t.Helper()
	v, err := cluster.Client().Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	return v.GitVersion
}

// wantRow finds the table whose header starts with header's first column and
// checks the header holds the columns in order and some row starts with row.
func wantRow(t *testing.T, out string, header, row []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < len(header) || f[0] != header[0] || !hasInOrder(f, header) {
			continue
		}
		for _, r := range lines[i+1:] {
			rf := strings.Fields(r)
			if len(rf) == 0 {
				break
			}
			if len(rf) >= len(row) && hasPrefix(rf, row) {
				return
			}
		}
		t.Errorf("no row starting %v under header %v in:\n%s", row, header, out)
		return
	}
	t.Errorf("no header with columns %v in:\n%s", header, out)
}

func hasInOrder(fields, want []string) bool {
	j := 0
	for _, f := range fields {
		if j < len(want) && f == want[j] {
			j++
		}
	}
	return j == len(want)
}

// hasPrefix compares fields with want; a want ending in a duration unit
// matches any age that starts with it ("3m" matches "3m12s").
func hasPrefix(fields, want []string) bool {
	for i, w := range want {
		if fields[i] != w && (!strings.HasSuffix(w, "m") || !strings.HasPrefix(fields[i], w)) {
			return false
		}
	}
	return true
}

// TestOversizedMissionRejected: a mission larger than Fornax or the API
// server accepts is refused with a message that names the limit.
func TestOversizedMissionRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		want string
	}{
		{"2 MiB of ConfigMap data, over Fornax's 1 MiB", 2 << 20, "over the limit of 1048576 bytes (1 MiB)"},
		{"4 MiB, over the API server's request limit", 4 << 20, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			big := strings.Repeat("x", tc.size)
			m := &edgev1alpha1.Mission{
				ObjectMeta: metav1.ObjectMeta{Name: "huge", Namespace: "default"},
				Spec: edgev1alpha1.MissionSpec{Resources: []runtime.RawExtension{{
					Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"huge"},"data":{"blob":"` + big + `"}}`)}}},
			}
			err := newClient(t).Create(t.Context(), m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want a refusal containing %q", err, tc.want)
			}
			t.Logf("refused with: %.200s", err)
		})
	}
	// Just under the limit is accepted.
	m := &edgev1alpha1.Mission{
		ObjectMeta: metav1.ObjectMeta{Name: "large", Namespace: "default"},
		Spec: edgev1alpha1.MissionSpec{Resources: []runtime.RawExtension{{
			Raw: []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"large"},"stringData":{"a":"` + strings.Repeat("y", 1000000) + `"}}`)}}},
	}
	if err := newClient(t).Create(t.Context(), m); err != nil {
		t.Fatalf("a mission with 1,000,000 bytes of data: %v", err)
	}
}
