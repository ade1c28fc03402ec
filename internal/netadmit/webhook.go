package netadmit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
)

// Path is where the webhook serves Subnet reviews.
const Path = "/validate-network-fornax-io-v1alpha1-subnet"

// ConfigurationName is the ValidatingWebhookConfiguration Register writes.
const ConfigurationName = "fornax-network"

// ServiceName is the in-cluster Service the API server calls the webhook
// through, unless fornaxd is given a URL (config/deploy/hub/service.yaml).
const ServiceName = "fornax-hub-webhook"

// Handler reviews Subnet creations and updates against the stored VPCs,
// Subnets and EdgeClusters.
type Handler struct {
	Client  client.Reader
	Decoder admission.Decoder
	// Self is this cluster's own name: a subnet may be owned by it as well
	// as by a cluster below it.
	Self string
}

// NewHandler returns a Handler reading through c.
func NewHandler(c client.Reader, scheme *runtime.Scheme, self string) *Handler {
	return &Handler{Client: c, Decoder: admission.NewDecoder(scheme), Self: self}
}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	s := &networkv1alpha1.Subnet{}
	if err := h.Decoder.Decode(req, s); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the subnet: %w", err))
	}
	if s.Labels[labelFromParent] == "true" {
		// A middle cluster storing its parent's subnet: checked where it was
		// created; its owner may be outside this cluster's subtree.
		return admission.Allowed("")
	}
	var vpc *networkv1alpha1.VPC
	v := &networkv1alpha1.VPC{}
	switch err := h.Client.Get(ctx, client.ObjectKey{Name: s.Spec.VPC}, v); {
	case err == nil:
		vpc = v
	case !apierrors.IsNotFound(err):
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading VPC %s: %w", s.Spec.VPC, err))
	}
	known := s.Spec.Cluster != "" && s.Spec.Cluster == h.Self
	if !known && s.Spec.Cluster != "" {
		switch err := h.Client.Get(ctx, client.ObjectKey{Name: s.Spec.Cluster}, &edgev1alpha1.EdgeCluster{}); {
		case err == nil:
			known = true
		case !apierrors.IsNotFound(err):
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading EdgeCluster %s: %w", s.Spec.Cluster, err))
		}
	}
	others := &networkv1alpha1.SubnetList{}
	if err := h.Client.List(ctx, others); err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("listing subnets: %w", err))
	}
	if err := CheckSubnet(s, vpc, others.Items, known); err != nil {
		return admission.Denied(err.Error())
	}
	return admission.Allowed("")
}

// NewServer returns a webhook server on addr (host:port) that presents the
// certificate getCert returns and serves h at Path.
func NewServer(host string, port int, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), h *Handler) webhook.Server {
	srv := webhook.NewServer(webhook.Options{Host: host, Port: port, TLSOpts: []func(*tls.Config){
		func(c *tls.Config) { c.GetCertificate = getCert },
	}})
	srv.Register(Path, &webhook.Admission{Handler: h})
	return srv
}

// Register creates or updates the ValidatingWebhookConfiguration that sends
// Subnet creations and updates to the webhook: at url (a local or external
// endpoint) or, when url is empty, at the Service namespace/service, port
// 9443. caBundle is the PEM of the CA that signed the webhook's
// certificate. The webhook fails closed: while it is unreachable, subnets
// cannot be created (the error says why) rather than created unchecked.
func Register(ctx context.Context, kube kubernetes.Interface, caBundle []byte, url, namespace, service string) error {
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: caBundle}
	if url != "" {
		cc.URL = ptr.To(url + Path)
	} else {
		cc.Service = &admissionregistrationv1.ServiceReference{Namespace: namespace, Name: service, Path: ptr.To(Path), Port: ptr.To[int32](9443)}
	}
	want := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigurationName, Labels: map[string]string{"app.kubernetes.io/part-of": "fornax"}},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "subnets.network.fornax.io",
			ClientConfig:            cc,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			TimeoutSeconds:          ptr.To[int32](5),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{networkv1alpha1.GroupName}, APIVersions: []string{"v1alpha1"},
					Resources: []string{"subnets"}, Scope: ptr.To(admissionregistrationv1.ClusterScope)},
			}},
		}},
	}
	api := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	got, err := api.Get(ctx, ConfigurationName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ValidatingWebhookConfiguration %s: %w", ConfigurationName, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", ConfigurationName, err)
	}
	got.Webhooks, got.Labels = want.Webhooks, want.Labels
	if _, err := api.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating ValidatingWebhookConfiguration %s: %w", ConfigurationName, err)
	}
	return nil
}
