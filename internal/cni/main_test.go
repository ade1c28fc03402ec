package cni_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

func TestMain(m *testing.M) {
	// Nothing this test binary started may outlive it.
	os.Exit(localcluster.RunTests(stopAfter{m}, nil, nil))
}

// stopAfter stops the shared API server after the tests, before
// RunTests's leak check.
type stopAfter struct{ m *testing.M }

func (s stopAfter) Run() int {
	code := s.m.Run()
	if shared.c != nil {
		if err := shared.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	return code
}

// clusterName is the shared cluster's, which its Subnets name as owner.
const clusterName = "cni"

// shared is one API server with Fornax's API for the tests that need one;
// the pure tests run without it.
var shared struct {
	once sync.Once
	dir  string
	c    *localcluster.Cluster
	err  error
}

// apiServer starts the shared API server on first use.
func apiServer(t *testing.T) *localcluster.Cluster {
	t.Helper()
	shared.once.Do(startShared) // localcluster starts its processes from a thread that never exits
	if shared.err != nil {
		t.Fatalf("starting the API server: %v", shared.err)
	}
	return shared.c
}

// startShared starts the API server and installs Fornax's API.
func startShared() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if shared.dir, shared.err = os.MkdirTemp("", "fornax-cni-test-"); shared.err != nil {
		return
	}
	shared.c, shared.err = localcluster.Start(ctx, localcluster.Options{Name: clusterName, Dir: filepath.Join(shared.dir, clusterName)})
	if shared.err == nil {
		shared.err = install.API(ctx, shared.c.RESTConfig())
	}
	if shared.err == nil {
		// No controller manager runs to create it, and pods need it.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
		_, shared.err = shared.c.Client().CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{})
	}
}

// apiClient is a client of the shared API server for pods and Fornax's
// network kinds.
func apiClient(t *testing.T) client.Client {
	t.Helper()
	c := apiServer(t)
	scheme := k8sruntime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := networkv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(c.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// createVPC creates a VPC and, unless vni is 0, gives it the VNI as the
// root's hub would (status subresource).
func createVPC(t *testing.T, cl client.Client, name, cidr string, vni int32) {
	t.Helper()
	ctx := t.Context()
	vpc := &networkv1alpha1.VPC{}
	vpc.Name, vpc.Spec.CIDR = name, cidr
	if err := cl.Create(ctx, vpc); err != nil {
		t.Fatalf("creating VPC %s: %v", name, err)
	}
	if vni != 0 {
		vpc.Status.VNI = vni
		if err := cl.Status().Update(ctx, vpc); err != nil {
			t.Fatalf("setting the VNI of VPC %s: %v", name, err)
		}
	}
}

func createSubnet(t *testing.T, cl client.Client, name, vpc, cidr string) {
	t.Helper()
	s := &networkv1alpha1.Subnet{}
	s.Name, s.Spec = name, networkv1alpha1.SubnetSpec{VPC: vpc, CIDR: cidr, Cluster: clusterName}
	if err := cl.Create(t.Context(), s); err != nil {
		t.Fatalf("creating subnet %s: %v", name, err)
	}
}

// createPod creates a pod object (no node runs it: CNI needs only the
// object) with the subnet annotation, unless subnet is "".
func createPod(t *testing.T, cl client.Client, name, subnet string) {
	t.Helper()
	p := &corev1.Pod{}
	p.Namespace, p.Name = "default", name
	if subnet != "" {
		p.Annotations = map[string]string{networkv1alpha1.AnnotationSubnet: subnet}
	}
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}
	if err := cl.Create(t.Context(), p); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
}
