package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
)

// APITimeout bounds ADD's reads from the API server.
const APITimeout = 10 * time.Second

// Placement is where a pod's interface goes: the Subnet its annotation
// names, and that Subnet's VPC.
type Placement struct {
	Subnet string
	CIDR   netip.Prefix
	VPC    string
	VNI    uint32
}

// Resolver finds a pod's Placement. Its errors are *types.Error with the
// codes of this package.
type Resolver interface {
	Resolve(ctx context.Context, namespace, name string) (Placement, error)
}

// APIResolver reads the pod, its Subnet and the Subnet's VPC from the
// cluster's API server.
type APIResolver struct {
	c      client.Reader
	server string
}

// NewAPIResolver connects to the API server of a kubeconfig. It makes no
// request: a missing or broken kubeconfig is reported here, an unreachable
// server by Resolve.
func NewAPIResolver(kubeconfig string) (*APIResolver, error) {
	if kubeconfig == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			"the network configuration has no kubeconfig: set it to the path of a kubeconfig for this cluster's API server, where fornax-cni reads pods and subnets", "")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("loading kubeconfig %s: %v", kubeconfig, err), "")
	}
	return NewAPIResolverForConfig(cfg)
}

// NewAPIResolverForConfig is NewAPIResolver for a rest.Config.
func NewAPIResolverForConfig(cfg *rest.Config) (*APIResolver, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = APITimeout
	cfg.WarningHandler = rest.NoWarnings{} // stdout is the CNI result's; stderr stays quiet
	cfg.UserAgent = "fornax-cni"
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := networkv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// A fixed mapping: no discovery round trips on every ADD.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace)
	mapper.Add(networkv1alpha1.GroupVersion.WithKind("Subnet"), meta.RESTScopeRoot)
	mapper.Add(networkv1alpha1.GroupVersion.WithKind("VPC"), meta.RESTScopeRoot)
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper})
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("creating a client for %s: %v", cfg.Host, err), "")
	}
	return &APIResolver{c: c, server: cfg.Host}, nil
}

// Resolve reads the pod's annotation AnnotationSubnet, the Subnet it
// names and the Subnet's VPC. A Subnet owned by another cluster is not
// refused: only its owner receives it from the root.
func (r *APIResolver) Resolve(ctx context.Context, namespace, name string) (Placement, error) {
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	pod := &corev1.Pod{}
	if err := r.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return Placement{}, types.NewError(ErrPodNotFound, fmt.Sprintf("pod %s/%s is not in the API server %s", namespace, name, r.server), "")
		}
		return Placement{}, r.apiError(fmt.Sprintf("reading pod %s/%s", namespace, name), err)
	}
	return r.placement(ctx, pod)
}

func (r *APIResolver) placement(ctx context.Context, pod *corev1.Pod) (Placement, error) {
	subnetName := pod.Annotations[networkv1alpha1.AnnotationSubnet]
	if subnetName == "" {
		return Placement{}, types.NewError(ErrNoSubnetAnnotation, fmt.Sprintf(
			"pod %s/%s has no annotation %s: set it to the name of a Subnet of this cluster (kubectl get subnets) to attach the pod to it",
			pod.Namespace, pod.Name, networkv1alpha1.AnnotationSubnet), "")
	}
	subnet := &networkv1alpha1.Subnet{}
	if err := r.c.Get(ctx, client.ObjectKey{Name: subnetName}, subnet); err != nil {
		if apierrors.IsNotFound(err) {
			return Placement{}, types.NewError(ErrSubnetNotFound, fmt.Sprintf(
				"subnet %s, named by pod %s/%s (annotation %s), is not in this cluster: create it at the root, or fix the annotation",
				subnetName, pod.Namespace, pod.Name, networkv1alpha1.AnnotationSubnet), "")
		}
		return Placement{}, r.apiError("reading subnet "+subnetName, err)
	}
	cidr, err := netip.ParsePrefix(subnet.Spec.CIDR)
	if err != nil || !cidr.Addr().Is4() || cidr != cidr.Masked() {
		return Placement{}, types.NewError(ErrSubnetNotFound, fmt.Sprintf("subnet %s has CIDR %q, which is not an IPv4 network address", subnetName, subnet.Spec.CIDR), "")
	}
	vpc := &networkv1alpha1.VPC{}
	if err := r.c.Get(ctx, client.ObjectKey{Name: subnet.Spec.VPC}, vpc); err != nil {
		if apierrors.IsNotFound(err) {
			return Placement{}, types.NewError(ErrVPCNotReady, fmt.Sprintf(
				"VPC %s of subnet %s is not in this cluster: the root delivers it with the subnet; is this cluster connected?", subnet.Spec.VPC, subnetName), "")
		}
		return Placement{}, r.apiError("reading VPC "+subnet.Spec.VPC, err)
	}
	if vpc.Status.VNI <= 0 {
		return Placement{}, types.NewError(ErrVPCNotReady, fmt.Sprintf(
			"VPC %s has no VNI yet: the root's hub allocates it; is this cluster connected?", vpc.Name), "")
	}
	return Placement{Subnet: subnetName, CIDR: cidr, VPC: vpc.Name, VNI: uint32(vpc.Status.VNI)}, nil
}

// apiError turns a failed request into a CNI error: an answer from the
// server is ErrAPI, no answer (unreachable, timed out) is worth a retry.
func (r *APIResolver) apiError(what string, err error) error {
	var status apierrors.APIStatus
	transient := apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err)
	if errors.As(err, &status) && !transient {
		return types.NewError(ErrAPI, fmt.Sprintf("%s from the API server %s: %v", what, r.server, err), "")
	}
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: the API server %s is not available: %v", what, r.server, err), "")
}
