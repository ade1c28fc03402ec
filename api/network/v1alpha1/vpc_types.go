package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VPCSpec is a tenant's private IPv4 address space.
//
// +kubebuilder:validation:XValidation:rule="self.cidr == oldSelf.cidr",message="cidr is immutable: create a new VPC"
type VPCSpec struct {
	// CIDR is the VPC's IPv4 range; its subnets must lie inside it. VPCs of
	// different tenants may overlap: each VPC is isolated from the others.
	// +kubebuilder:validation:Pattern=`^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$`
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",message="cidr must be an IPv4 network address with its prefix length, such as 10.1.0.0/16"
	CIDR string `json:"cidr"`
	// Tenant owns the VPC; informational.
	// +optional
	Tenant string `json:"tenant,omitempty"`
}

// VPCStatus is where the VPC stands.
type VPCStatus struct {
	// VNI is the VXLAN network identifier of the VPC, allocated by the root's
	// hub, unique in the tree. Zero until allocated.
	// +optional
	VNI int32 `json:"vni,omitempty"`
	// Clusters holds a subnet of the VPC, sorted.
	// +optional
	Clusters []string `json:"clusters,omitempty"`
	// ObservedGeneration is the spec generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// VPC is a tenant's private network. It may span clusters of the tree: pods
// attached to its subnets reach each other whichever cluster they run in, and
// nothing outside the VPC.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=fornax
// +kubebuilder:printcolumn:name="CIDR",type=string,JSONPath=`.spec.cidr`
// +kubebuilder:printcolumn:name="VNI",type=integer,JSONPath=`.status.vni`
// +kubebuilder:printcolumn:name="Tenant",type=string,JSONPath=`.spec.tenant`
// +kubebuilder:printcolumn:name="Clusters",type=string,JSONPath=`.status.clusters`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type VPC struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VPCSpec   `json:"spec"`
	Status VPCStatus `json:"status,omitempty"`
}

// VPCList is a list of VPCs.
//
// +kubebuilder:object:root=true
type VPCList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VPC `json:"items"`
}
