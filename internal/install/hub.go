package install

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fornax-edge/fornax/internal/certs"
)

// Names of the hub's objects in its namespace.
const (
	// HubCASecret holds the hub CA (tls.crt, tls.key).
	HubCASecret = "fornax-hub-ca"
	// HubConfigMap holds the hub's public settings (endpoint, cluster name).
	HubConfigMap = "fornax-hub"
	// Namespace is where Fornax keeps its objects in each cluster.
	Namespace = "fornax-system"
)

// caValidity is the hub CA's lifetime. The CA is never replaced by Hub, so
// that running it again cannot cut joined children off.
const caValidity = 10 * 365 * 24 * time.Hour

// Hub prepares a cluster to be a parent: the namespace, the hub CA (kept if it
// exists) and the hub's settings. It returns the CA and whether it was created.
func Hub(ctx context.Context, kube kubernetes.Interface, ns, name, endpoint string) (*certs.CA, bool, error) {
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	ca, created, err := ensureCA(ctx, kube, ns, name)
	if err != nil {
		return nil, false, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: HubConfigMap, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "fornax"}},
		Data:       map[string]string{"cluster-name": name, "endpoint": endpoint},
	}
	_, err = kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, false, fmt.Errorf("storing the hub settings: %w", err)
	}
	return ca, created, nil
}

// HubCA reads the hub CA of a cluster.
func HubCA(ctx context.Context, kube kubernetes.Interface, ns string) (*certs.CA, error) {
	s, err := kube.CoreV1().Secrets(ns).Get(ctx, HubCASecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the hub CA (Secret %s/%s): %w; run 'fornaxctl init' in this cluster first", ns, HubCASecret, err)
	}
	ca, err := certs.LoadCA(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("loading the hub CA from Secret %s/%s: %w", ns, HubCASecret, err)
	}
	return ca, nil
}

func ensureCA(ctx context.Context, kube kubernetes.Interface, ns, name string) (*certs.CA, bool, error) {
	ca, err := HubCA(ctx, kube, ns)
	if err == nil {
		return ca, false, nil
	}
	if _, gerr := kube.CoreV1().Secrets(ns).Get(ctx, HubCASecret, metav1.GetOptions{}); !apierrors.IsNotFound(gerr) {
		return nil, false, err // present but unreadable: never overwrite it
	}
	ca, err = certs.NewCA("fornax-hub-ca-"+name, caValidity)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: HubCASecret, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "fornax"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: ca.CertPEM(), corev1.TLSPrivateKeyKey: keyPEM},
	}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return nil, false, fmt.Errorf("storing the hub CA: %w", err)
	}
	return ca, true, nil
}
