// Package v1alpha1 holds the network.fornax.io/v1alpha1 API: VPC, a tenant's
// private address space that may span clusters of the tree; Subnet, a range of
// a VPC owned by exactly one cluster, into which that cluster's pods are
// attached; and Gateway, one per cluster, the facts about the cluster's
// gateway that the other gateways of its VPCs need to reach it.
//
// +kubebuilder:object:generate=true
// +groupName=network.fornax.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every kind in this package.
const GroupName = "network.fornax.io"

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&VPC{}, &VPCList{},
		&Subnet{}, &SubnetList{},
		&Gateway{}, &GatewayList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}

// AnnotationSubnet on a pod names the Subnet (in the pod's cluster) that
// fornax-cni attaches the pod to.
const AnnotationSubnet = "network.fornax.io/subnet"

// Condition types shared by the kinds of this package.
const (
	// ConditionReady is True when the object is programmed in the data plane
	// of every cluster it concerns (VPC, Subnet) or when the gateway's data
	// plane matches its desired state (Gateway).
	ConditionReady = "Ready"
	// ConditionAccepted is False when the object conflicts with another one
	// (for objects that reached a cluster without passing the root's
	// admission, as after a restore); the message names the conflict.
	ConditionAccepted = "Accepted"
)
