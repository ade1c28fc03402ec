package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SubnetSpec is a range of a VPC in one cluster.
//
// +kubebuilder:validation:XValidation:rule="self.vpc == oldSelf.vpc && self.cidr == oldSelf.cidr && self.cluster == oldSelf.cluster",message="vpc, cidr and cluster are immutable: create a new Subnet"
type SubnetSpec struct {
	// VPC names the VPC the subnet belongs to.
	// +kubebuilder:validation:MinLength=1
	VPC string `json:"vpc"`
	// CIDR is the subnet's IPv4 range, inside the VPC's and overlapping no
	// other subnet of the VPC. Its first address is the pods' gateway.
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked() && cidr(self).prefixLength() <= 30",message="cidr must be an IPv4 network address with a prefix length of at most 30, such as 10.1.1.0/24"
	CIDR string `json:"cidr"`
	// Cluster is the one cluster of the tree that owns the subnet: its pods
	// are attached to it there.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`
}

// SubnetStatus is where the subnet stands.
type SubnetStatus struct {
	// Gateway is the pods' default gateway in the subnet.
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// Allocated counts the addresses given to pods (reported by the owning cluster).
	// +optional
	Allocated int32 `json:"allocated,omitempty"`
	// ObservedGeneration is the spec generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted, Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Subnet is a range of a VPC owned by exactly one cluster. Pods of that
// cluster that carry the annotation network.fornax.io/subnet=<name> get an
// address from it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=fornax
// +kubebuilder:printcolumn:name="VPC",type=string,JSONPath=`.spec.vpc`
// +kubebuilder:printcolumn:name="CIDR",type=string,JSONPath=`.spec.cidr`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.cluster`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Subnet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SubnetSpec   `json:"spec"`
	Status SubnetStatus `json:"status,omitempty"`
}

// SubnetList is a list of Subnets.
//
// +kubebuilder:object:root=true
type SubnetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subnet `json:"items"`
}
