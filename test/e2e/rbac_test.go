package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// serviceAccount is who fornaxd runs as in the shipped manifests.
const serviceAccount = "system:serviceaccount:fornax-system:fornaxd"

// asServiceAccount writes a kubeconfig of c that impersonates fornaxd's
// ServiceAccount: the API server then authorizes every request by the RBAC
// of config/deploy, as for the Deployment in a real cluster.
func asServiceAccount(t testing.TB, c *localcluster.Cluster) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = serviceAccount
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:fornax-system", "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), c.Name+"-as-fornaxd.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFornaxdUnderItsServiceAccount runs a hub (with the network admission
// webhook) and an agent under the RBAC the manifests grant (config/deploy:
// base at the root; base and apply at the edge), delivers a mission of the
// sample app's kinds and a VPC with a subnet, and fails on any request the
// API server forbade: the least-privilege rights are enough.
func TestFornaxdUnderItsServiceAccount(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	clusters, err := localcluster.StartAll(ctx,
		localcluster.Options{Name: "root", Dir: filepath.Join(dir, "root")},
		localcluster.Options{Name: "edge", Dir: filepath.Join(dir, "edge"), NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range clusters {
			_ = c.Stop()
		}
	})
	root, edge := clusters[0], clusters[1]
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, root, "apply", "--server-side", "-k", filepath.Join(repo, "config", "deploy", "base"))
	kubectl(t, edge, "apply", "--server-side", "-k", filepath.Join(repo, "config", "deploy", "base"))
	kubectl(t, edge, "apply", "--server-side", "-k", filepath.Join(repo, "config", "deploy", "apply"))
	// The impersonation is real: the ServiceAccount may not read Secrets
	// outside fornax-system.
	bins, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	// (can-i answers "no" with exit status 1)
	if out, _, _ := runCmd(t, filepath.Join(bins, localcluster.BinKubectl), "--kubeconfig", root.Kubeconfig,
		"auth", "can-i", "get", "secrets", "-n", "kube-system", "--as", serviceAccount); strings.TrimSpace(out) != "no" {
		t.Fatalf("fornaxd may read kube-system's Secrets: %q", out)
	}

	// The operator's steps, with the operator's rights.
	addr := freeAddr(t)
	fornaxctl(t, "init", "--kubeconfig", root.Kubeconfig, "--endpoint", addr)
	webhook := freeAddr(t)
	_, port, _ := net.SplitHostPort(webhook)
	hub, err := root.Run("fornaxd", fornaxdBin, "--kubeconfig", asServiceAccount(t, root), "--listen", addr, "--cluster-name", "root",
		"--webhook-listen", webhook, "--webhook-url", "https://127.0.0.1:"+port,
		"--metrics-bind-address", "0", "--health-bind-address", "0", "--log-level", logLevel())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the hub to listen", func(ctx context.Context) (bool, error) {
		if hub.Exited() {
			return false, fmt.Errorf("fornaxd exited:\n%s", hub.Log(30))
		}
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, nil
		}
		return true, conn.Close()
	})
	tr := &tree{root: root, edges: map[string]*localcluster.Cluster{"edge": edge}, addr: addr, rootCli: edgeClient(t, root)}
	parent, token, hash := tr.token(t)
	fornaxctl(t, "join", "--kubeconfig", edge.Kubeconfig, "--parent", parent, "--token", token, "--ca-hash", hash, "--name", "edge")
	agent, err := edge.Run("fornaxd", fornaxdBin, "--kubeconfig", asServiceAccount(t, edge), "--report-interval", "1s",
		"--metrics-bind-address", "0", "--health-bind-address", "0", "--log-level", logLevel())
	if err != nil {
		t.Fatal(err)
	}

	// A mission with the sample app's kinds, made by the agent.
	kubectl(t, root, "create", "namespace", "shop")
	m := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app"},
		Spec: edgev1alpha1.MissionSpec{Placement: edgev1alpha1.Placement{Clusters: []string{"edge"}}}}
	for _, y := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {k: v}",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: app}\nstringData: {k: v}",
		"apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app}, ports: [{port: 80}]}",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 1, selector: {matchLabels: {app: app}}, template: {metadata: {labels: {app: app}}, spec: {containers: [{name: app, image: registry.example/app:1}]}}}",
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: app}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: app, image: registry.example/app:1}]}}}",
	} {
		m.Spec.Resources = append(m.Spec.Resources, raw(t, y))
	}
	if err := tr.rootCli.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the mission applied at the edge, as the root shows", func(ctx context.Context) (bool, error) {
		got := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			return false, err
		}
		return got.Status.Summary.Applied == 1, nil
	})

	// The network kinds: admitted by the webhook, delivered to the edge.
	netCli := netClient(t, root)
	for _, o := range []client.Object{newVPC("blue", "10.9.0.0/16", "acme"), newSubnet("blue-edge", "blue", "10.9.1.0/24", "edge")} {
		if err := netCli.Create(ctx, o); err != nil {
			t.Fatalf("creating %s at the root: %v", o.GetName(), err)
		}
	}
	edgeNet := netClient(t, edge)
	waitFor(t, 60*time.Second, "subnet blue-edge accepted at the root and delivered to the edge", func(ctx context.Context) (bool, error) {
		sn := &networkv1alpha1.Subnet{}
		if err := netCli.Get(ctx, client.ObjectKey{Name: "blue-edge"}, sn); err != nil {
			return false, err
		}
		if !meta.IsStatusConditionTrue(sn.Status.Conditions, networkv1alpha1.ConditionAccepted) {
			return false, nil
		}
		return edgeNet.Get(ctx, client.ObjectKey{Name: "blue-edge"}, &networkv1alpha1.Subnet{}) == nil, nil
	})

	// Nothing was refused along the way.
	for name, d := range map[string]*localcluster.Daemon{"root": hub, "edge": agent} {
		raw, err := os.ReadFile(d.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(line, "forbidden") {
				t.Errorf("fornaxd at %s was refused a request under its ServiceAccount: %s", name, line)
			}
		}
	}
}
