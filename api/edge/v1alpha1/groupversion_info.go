// Package v1alpha1 holds the edge.fornax.io/v1alpha1 API: EdgeCluster, one object
// per cluster of the tree below the API server that stores it, and Mission, a set
// of ordinary Kubernetes manifests together with the clusters they must run on.
//
// +kubebuilder:object:generate=true
// +groupName=edge.fornax.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every kind in this package.
const GroupName = "edge.fornax.io"

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
		&EdgeCluster{}, &EdgeClusterList{},
		&Mission{}, &MissionList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
