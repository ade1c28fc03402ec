// Package join is the child side of admission to a Fornax tree: it presents a
// bootstrap token to the parent over TLS pinned to the parent's CA hash,
// receives a client certificate naming the cluster, and keeps the resulting
// credentials as a Secret in the child's own cluster, where fornaxd's agent
// role finds them.
package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// CredentialsSecret is the Secret, in the Fornax namespace of the child, that
// holds the child's link credentials.
const CredentialsSecret = "fornax-agent"

// Secret keys besides tls.crt and tls.key.
const (
	keyCA      = "ca.crt"
	keyParent  = "parent-address"
	keyCluster = "cluster-name"
	keyParentN = "parent-name"
	keyPath    = "path" // this cluster's path in the tree, as the parent last said
)

// ErrNotJoined means the cluster holds no link credentials.
var ErrNotJoined = errors.New("this cluster has not joined a parent")

// Credentials are what a child needs to connect to its parent.
type Credentials struct {
	Cluster       string // this cluster's name in the tree
	ParentAddress string // host:port of the parent's hub
	ParentName    string
	CertPEM       []byte
	KeyPEM        []byte
	CAPEM         []byte // the parent's CA
	// Path is this cluster's path from the root ("root/eu/berlin"), as the
	// parent's last Welcome said; empty until the first one.
	Path string
}

// Certificate returns the TLS client certificate.
func (c *Credentials) Certificate() (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the client certificate: %w", err)
	}
	return &pair, nil
}

// Roots returns a pool holding the parent's CA.
func (c *Credentials) Roots() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("the stored parent CA is not valid PEM")
	}
	return pool, nil
}

// Load reads the credentials from the child's cluster.
func Load(ctx context.Context, cs kubernetes.Interface, namespace string) (*Credentials, error) {
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, CredentialsSecret, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w (no Secret %s/%s): run 'fornaxctl join' first", ErrNotJoined, namespace, CredentialsSecret)
		}
		return nil, fmt.Errorf("reading the link credentials: %w", err)
	}
	c := &Credentials{
		Cluster: string(s.Data[keyCluster]), ParentAddress: string(s.Data[keyParent]), ParentName: string(s.Data[keyParentN]),
		CertPEM: s.Data[corev1.TLSCertKey], KeyPEM: s.Data[corev1.TLSPrivateKeyKey], CAPEM: s.Data[keyCA],
		Path: string(s.Data[keyPath]),
	}
	if c.Cluster == "" || c.ParentAddress == "" || len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 || len(c.CAPEM) == 0 {
		return nil, fmt.Errorf("the Secret %s/%s is incomplete: run 'fornaxctl join' again", namespace, CredentialsSecret)
	}
	return c, nil
}

// Save stores the credentials in the child's cluster, creating the namespace
// if needed.
func Save(ctx context.Context, cs kubernetes.Interface, namespace string, c *Credentials) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CredentialsSecret, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "fornax"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey: c.CertPEM, corev1.TLSPrivateKeyKey: c.KeyPEM, keyCA: c.CAPEM,
			keyParent: []byte(c.ParentAddress), keyCluster: []byte(c.Cluster), keyParentN: []byte(c.ParentName),
		},
	}
	if c.Path != "" {
		s.Data[keyPath] = []byte(c.Path)
	}
	_, err := cs.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = cs.CoreV1().Secrets(namespace).Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("storing the link credentials: %w", err)
	}
	return nil
}

// Request is what an operator gives `fornaxctl join`.
type Request struct {
	Parent string // host:port of the parent's hub
	Token  string
	CAHash string
	Name   string
	Labels map[string]string
}

// ClusterUID returns the identity of a cluster: its kube-system namespace UID.
func ClusterUID(ctx context.Context, cs kubernetes.Interface) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading this cluster's identity (namespace kube-system): %w", err)
	}
	return string(ns.UID), nil
}

// Join asks the parent to admit the cluster and returns its credentials. It
// writes nothing; Save stores them.
func Join(ctx context.Context, req Request, clusterUID string) (*Credentials, error) {
	if err := link.ValidClusterName(req.Name); err != nil {
		return nil, err
	}
	var pinned *x509.Certificate
	tlsCfg, err := link.PinnedTLS(req.CAHash, func(ca *x509.Certificate) { pinned = ca })
	if err != nil {
		return nil, err
	}
	keyPEM, csrPEM, err := certs.NewCSR(req.Name)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(req.Parent,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(link.MaxFrameBytes)))
	if err != nil {
		return nil, fmt.Errorf("parent address %q: %w", req.Parent, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := linkpb.NewLinkClient(conn).Join(ctx, &linkpb.JoinRequest{
		ProtocolVersion: link.ProtocolVersion, Token: req.Token, Cluster: req.Name,
		ClusterUid: clusterUID, Labels: req.Labels, CsrPem: csrPEM,
	}, grpc.WaitForReady(false))
	if err != nil {
		if st, ok := status.FromError(err); ok {
			if st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded {
				return nil, fmt.Errorf("cannot reach or verify the parent at %s: %s (check --parent, and that fornaxd runs there)", req.Parent, st.Message())
			}
			return nil, fmt.Errorf("the parent at %s refused to admit %s: %s", req.Parent, req.Name, st.Message())
		}
		return nil, fmt.Errorf("joining %s: %w", req.Parent, err)
	}
	if pinned == nil {
		return nil, errors.New("the parent's CA was not verified")
	}
	// The CA sent back must be the one pinned.
	ca, err := certs.ParseCertPEM(resp.GetCaPem())
	if err != nil || certs.Hash(ca) != req.CAHash {
		return nil, fmt.Errorf("the parent returned a CA other than the pinned %s", req.CAHash)
	}
	return &Credentials{
		Cluster: req.Name, ParentAddress: req.Parent, ParentName: resp.GetParent(),
		CertPEM: resp.GetCertificatePem(), KeyPEM: keyPEM, CAPEM: resp.GetCaPem(),
	}, nil
}
