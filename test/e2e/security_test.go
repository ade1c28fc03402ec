package e2e

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/hub"
	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// TestJoinAndLinkSecurity presents bad credentials and bad frames to a real
// hub: each is refused with a message that says what to do, nothing is
// created at the parent, and the hub keeps serving the others.
func TestJoinAndLinkSecurity(t *testing.T) {
	tr := newTree(t, nil, localcluster.Options{Name: "root"}, localcluster.Options{Name: "alpha"},
		localcluster.Options{Name: "beta"}, localcluster.Options{Name: "intruder"})

	join := func(cluster, name, parent, token, hash string) (string, error) {
		out, stderr, err := fornaxctlErr(t, "join", "--kubeconfig", tr.edges[cluster].Kubeconfig,
			"--parent", parent, "--token", token, "--ca-hash", hash, "--name", name)
		return out + stderr, err
	}
	edgeCount := func() int {
		list := &edgev1alpha1.EdgeClusterList{}
		if err := tr.rootCli.List(t.Context(), list); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	noCredentials := func(cluster string) {
		t.Helper()
		_, err := tr.edges[cluster].Client().CoreV1().Secrets(hub.DefaultNamespace).Get(t.Context(), "fornax-agent", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s holds link credentials after a refused join (%v)", cluster, err)
		}
	}
	usesLeft := func(token string) string {
		s, err := tr.root.Client().CoreV1().Secrets(hub.DefaultNamespace).Get(t.Context(), "fornax-token-"+token[:6], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(s.Data["uses-remaining"])
	}

	parent, goodToken, hash := tr.token(t, "--uses", "1")
	expiring := func() string {
		_, tok, _ := tr.token(t)
		s, err := tr.root.Client().CoreV1().Secrets(hub.DefaultNamespace).Get(t.Context(), "fornax-token-"+tok[:6], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data["expiration"] = []byte(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
		if _, err := tr.root.Client().CoreV1().Secrets(hub.DefaultNamespace).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return tok
	}()

	for _, tc := range []struct {
		name, token, hash, want string
	}{
		{"malformed token", "not-a-token", hash, "token is malformed"},
		{"unknown token", "abcdef.0123456789abcdef", hash, "not known at the parent"},
		{"wrong secret", goodToken[:7] + "0000000000000000", hash, "secret does not match"},
		{"expired token", expiring, hash, "has expired"},
		{"CA hash mismatch", goodToken, "sha256:" + strings.Repeat("0", 64), "not the pinned"},
		{"malformed CA hash", goodToken, "md5:1234", "not of the form sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := join("alpha", "alpha", parent, tc.token, tc.hash)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("join with %s: err=%v, output %q; want a refusal mentioning %q", tc.name, err, out, tc.want)
			}
			if n := edgeCount(); n != 0 {
				t.Errorf("%d EdgeClusters at the parent after a refused join", n)
			}
			noCredentials("alpha")
			if u := usesLeft(goodToken); u != "1" {
				t.Errorf("a refused join used the good token up (uses left %s)", u)
			}
		})
	}

	// The good token admits alpha once; a second use is refused.
	if out, err := join("alpha", "alpha", parent, goodToken, hash); err != nil {
		t.Fatalf("join with a good token: %v\n%s", err, out)
	}
	if out, err := join("beta", "beta", parent, goodToken, hash); err == nil || !strings.Contains(out, "already been used") {
		t.Fatalf("second use of a one-use token: err=%v, output %q", err, out)
	}
	noCredentials("beta")

	t.Run("name taken by another cluster", func(t *testing.T) {
		_, tok, _ := tr.token(t)
		out, err := join("intruder", "alpha", parent, tok, hash)
		if err == nil || !strings.Contains(out, "taken by another cluster") || !strings.Contains(out, "fornaxctl remove cluster alpha") {
			t.Fatalf("join under a taken name: err=%v, output %q", err, out)
		}
		if u := usesLeft(tok); u != "1" {
			t.Errorf("a refused join used the token up")
		}
		noCredentials("intruder")
	})

	_, tok, _ := tr.token(t)
	if out, err := join("beta", "beta", parent, tok, hash); err != nil {
		t.Fatalf("join beta: %v\n%s", err, out)
	}
	tr.startAgent(t, "alpha")
	tr.startAgent(t, "beta")
	for _, n := range []string{"alpha", "beta"} {
		waitFor(t, 30*time.Second, n+" Connected", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, n)
			return err == nil && ec.Status.State == edgev1alpha1.StateConnected, err
		})
	}

	t.Run("same identity re-joins", func(t *testing.T) {
		_, tok, _ := tr.token(t)
		if out, err := join("alpha", "alpha", parent, tok, hash); err != nil {
			t.Fatalf("alpha re-joining under its own name: %v\n%s", err, out)
		}
		if n := edgeCount(); n != 2 {
			t.Errorf("%d EdgeClusters after a re-join, want 2", n)
		}
		// The hub ends the stream that used the old, now revoked certificate;
		// the running agent reconnects with the new one, without a restart.
		waitFor(t, 30*time.Second, "alpha reconnected with its new certificate", func(ctx context.Context) (bool, error) {
			n := 0
			for _, line := range strings.Split(tr.hub.Log(500), "\n") {
				if strings.Contains(line, `"msg":"child connected"`) && strings.Contains(line, `"cluster":"alpha"`) {
					n++
				}
			}
			return n >= 2 && strings.Contains(tr.agents["alpha"].Log(100), "loaded new link credentials"), nil
		})
		waitFor(t, 10*time.Second, "alpha Connected", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "alpha")
			return err == nil && ec.Status.State == edgev1alpha1.StateConnected, err
		})
	})

	alphaCreds, err := joinLoad(t, tr.edges["alpha"])
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a certificate speaks only for its own cluster", func(t *testing.T) {
		s := rawStream(t, tr.addr, alphaCreds)
		if err := s.SendMsg(mustMarshal(t, &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Hello{Hello: &linkpb.Hello{
			ProtocolVersion: link.ProtocolVersion, Cluster: "beta", Epoch: 1}}})); err != nil {
			t.Fatal(err)
		}
		err := s.RecvMsg(&linkpb.ParentFrame{})
		if err == nil || !strings.Contains(err.Error(), "may only speak for itself") {
			t.Fatalf("Hello as beta with alpha's certificate: %v", err)
		}
	})

	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"malformed frame", []byte{0xff, 0xff, 0xff, 0x01}, "unmarshal"},
		{"oversized frame", make([]byte, link.MaxFrameBytes+1), "larger than max"},
		{"invalid report", mustMarshal(t, &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{
			Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "Not A Name"}}}}}), "not a DNS-1123 label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rawStream(t, tr.addr, alphaCreds)
			if err := s.SendMsg(mustMarshal(t, &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Hello{Hello: &linkpb.Hello{
				ProtocolVersion: link.ProtocolVersion, Cluster: "alpha", Epoch: 99}}})); err != nil {
				t.Fatal(err)
			}
			if err := s.RecvMsg(&linkpb.ParentFrame{}); err != nil {
				t.Fatalf("no Welcome: %v", err)
			}
			_ = s.SendMsg(tc.frame)
			var err error
			for err == nil {
				err = s.RecvMsg(&linkpb.ParentFrame{})
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("after a %s the stream ended with %v; want a mention of %q", tc.name, err, tc.want)
			}
			// The hub still serves the others: beta stays connected.
			ec, err := tr.ec(t, t.Context(), "beta")
			if err != nil || ec.Status.State != edgev1alpha1.StateConnected {
				t.Errorf("beta is %s after alpha's bad frame (%v)", ec.Status.State, err)
			}
		})
	}

	t.Run("removed cluster is refused", func(t *testing.T) {
		fornaxctl(t, "remove", "cluster", "beta", "--kubeconfig", tr.root.Kubeconfig)
		waitFor(t, 30*time.Second, "the hub to refuse beta's reconnect", func(ctx context.Context) (bool, error) {
			log := tr.hub.Log(300)
			return strings.Contains(log, `"cluster":"beta"`) && strings.Contains(log, "has been removed from this parent"), nil
		})
		if _, err := tr.ec(t, t.Context(), "beta"); !apierrors.IsNotFound(err) {
			t.Errorf("beta's EdgeCluster came back after removal (%v)", err)
		}
		if !strings.Contains(tr.agents["beta"].Log(100), "join again with a new token") {
			t.Errorf("beta's agent was not told what to do:\n%s", tr.agents["beta"].Log(20))
		}
	})
}

func joinLoad(t testing.TB, c *localcluster.Cluster) (*join.Credentials, error) {
	t.Helper()
	return join.Load(t.Context(), c.Client(), hub.DefaultNamespace)
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawCodec sends byte slices as they are, so a test can put any bytes on the
// wire as a gRPC message; it decodes answers as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (rawCodec) Name() string                    { return "proto" }
func (rawCodec) String() string                  { return "raw" }

// rawStream opens a Connect stream with a cluster's credentials.
func rawStream(t testing.TB, addr string, creds *join.Credentials) grpc.ClientStream {
	t.Helper()
	roots, err := creds.Roots()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := creds.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := link.ClientTLS(roots, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/fornax.link.v1.Link/Connect", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCertificateRotation gives children 30-second certificates: the agent
// renews at about two thirds of that, over the open link, without
// reconnecting, and the parent accepts the new certificate.
func TestCertificateRotation(t *testing.T) {
	tr := newTree(t, append([]string{"--client-cert-validity", "30s"}, keepaliveArgs...),
		localcluster.Options{Name: "root"}, localcluster.Options{Name: "rotor"})
	rotor := tr.edges["rotor"]
	parent, tok, hash := tr.token(t)
	fornaxctl(t, "join", "--kubeconfig", rotor.Kubeconfig, "--parent", parent, "--token", tok, "--ca-hash", hash, "--name", "rotor")
	first, err := joinLoad(t, rotor)
	if err != nil {
		t.Fatal(err)
	}
	tr.startAgent(t, "rotor")
	waitFor(t, 45*time.Second, "the agent to renew its certificate", func(context.Context) (bool, error) {
		return strings.Contains(tr.agents["rotor"].Log(100), "certificate renewed"), nil
	})
	renewed, err := joinLoad(t, rotor)
	if err != nil {
		t.Fatal(err)
	}
	if string(renewed.CertPEM) == string(first.CertPEM) {
		t.Fatal("the stored certificate did not change")
	}
	ec, err := tr.ec(t, t.Context(), "rotor")
	if err != nil {
		t.Fatal(err)
	}
	if ec.Status.State != edgev1alpha1.StateConnected {
		t.Errorf("rotor is %s after renewal", ec.Status.State)
	}
	connects := strings.Count(tr.hub.Log(300), `"msg":"child connected"`)
	if connects != 1 {
		t.Errorf("the hub saw %d connections from rotor; renewal must not reconnect", connects)
	}
}
