package netadmit_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netadmit"
)

var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, &localcluster.Options{Name: "netadmit"}, func(c *localcluster.Cluster) error {
		cluster = c
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return install.API(ctx, c.RESTConfig())
	}))
}

// TestWebhookRejectsConflictingSubnets serves the webhook in this process,
// registers it with a real API server and creates subnets through the API:
// conflicting ones are refused with a message naming the conflict, nothing
// is stored for them, and valid ones are stored.
func TestWebhookRejectsConflictingSubnets(t *testing.T) {
	ctx := t.Context()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{networkv1alpha1.AddToScheme, edgev1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := client.New(cluster.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certs.NewCA("netadmit-test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServing([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	srv := netadmit.NewServer("127.0.0.1", port, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil },
		netadmit.NewHandler(cli, scheme, "root"))
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(sctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	url := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := netadmit.Register(ctx, cluster.Client(), ca.CertPEM(), url, "", ""); err != nil {
		t.Fatal(err)
	}
	// Registering twice updates in place.
	if err := netadmit.Register(ctx, cluster.Client(), ca.CertPEM(), url, "", ""); err != nil {
		t.Fatal(err)
	}

	for _, o := range []client.Object{
		&edgev1alpha1.EdgeCluster{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		&networkv1alpha1.VPC{ObjectMeta: metav1.ObjectMeta{Name: "blue"}, Spec: networkv1alpha1.VPCSpec{CIDR: "10.1.0.0/16"}},
		&networkv1alpha1.VPC{ObjectMeta: metav1.ObjectMeta{Name: "red"}, Spec: networkv1alpha1.VPCSpec{CIDR: "10.1.0.0/16"}},
	} {
		if err := cli.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	sub := func(name, vpc, cidr, cluster string) *networkv1alpha1.Subnet {
		return &networkv1alpha1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkv1alpha1.SubnetSpec{VPC: vpc, CIDR: cidr, Cluster: cluster}}
	}
	// The webhook may take a moment to be reachable: the first valid
	// subnet is retried until it is admitted.
	first := sub("blue-a", "blue", "10.1.1.0/24", "a")
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := cli.Create(ctx, first)
		if err != nil && strings.Contains(err.Error(), "failed calling webhook") {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		t.Fatalf("creating the first subnet: %v", err)
	}
	for _, tc := range []struct {
		s       *networkv1alpha1.Subnet
		wantErr string
	}{
		{sub("blue-b", "blue", "10.1.2.0/24", "root"), ""},
		{sub("red-a", "red", "10.1.1.0/24", "a"), ""}, // another VPC may overlap
		{sub("blue-c", "blue", "10.1.1.128/25", "a"), "10.1.1.128/25 overlaps subnet blue-a (10.1.1.0/24, cluster a) of VPC blue"},
		{sub("blue-d", "blue", "10.2.0.0/24", "a"), "10.2.0.0/24 is outside VPC blue (10.1.0.0/16)"},
		{sub("green-a", "green", "10.1.9.0/24", "a"), `VPC "green" not found: create the VPC first`},
		{sub("blue-e", "blue", "10.1.5.0/24", "mars"), `cluster "mars" is not in the tree`},
	} {
		t.Run(tc.s.Name, func(t *testing.T) {
			err := cli.Create(ctx, tc.s)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("admitted; want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not say %q", err, tc.wantErr)
			}
			if tc.wantErr != "" {
				err := cli.Get(ctx, client.ObjectKeyFromObject(tc.s), &networkv1alpha1.Subnet{})
				if client.IgnoreNotFound(err) != nil || err == nil {
					t.Fatalf("a refused subnet is stored (or cannot be read): %v", err)
				}
			}
		})
	}
}
