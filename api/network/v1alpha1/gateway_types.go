package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GatewaySpec is what a cluster's gateway tells the others about itself.
type GatewaySpec struct {
	// Cluster is the cluster the gateway serves; the object is named after it.
	// +kubebuilder:validation:MinLength=1
	Cluster string `json:"cluster"`
	// Endpoint is the underlay IPv4 address the other gateways send the
	// VPCs' tunnelled traffic to.
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="endpoint must be an IPv4 address"
	Endpoint string `json:"endpoint"`
	// PublicKey is the gateway's key for encrypted tunnels (base64); empty
	// when the gateway does not encrypt.
	// +optional
	PublicKey string `json:"publicKey,omitempty"`
}

// PeerState says whether a gateway has programmed its tunnel to a peer.
// +kubebuilder:validation:Enum=Programmed;Pending;Stale
type PeerState string

const (
	// PeerProgrammed: the routes to the peer's subnets are in the data plane.
	PeerProgrammed PeerState = "Programmed"
	// PeerPending: the peer is known but its routes are not programmed yet.
	PeerPending PeerState = "Pending"
	// PeerStale: the link to the parent is down; the last known routes are kept.
	PeerStale PeerState = "Stale"
)

// GatewayPeer is another gateway sharing a VPC with this one.
type GatewayPeer struct {
	// Cluster is the peer's cluster.
	Cluster string `json:"cluster"`
	// Endpoint is the peer's underlay address.
	Endpoint string `json:"endpoint"`
	// VPCs shared with the peer, sorted.
	VPCs []string `json:"vpcs,omitempty"`
	// State of the tunnel to the peer.
	State PeerState `json:"state"`
}

// GatewayStatus is what the gateway has programmed.
type GatewayStatus struct {
	// VPCs the gateway serves (those with a subnet in its cluster), sorted.
	// +optional
	VPCs []string `json:"vpcs,omitempty"`
	// Subnets the gateway serves, sorted.
	// +optional
	Subnets []string `json:"subnets,omitempty"`
	// Peers are the other gateways of those VPCs.
	// +optional
	Peers []GatewayPeer `json:"peers,omitempty"`
	// Generation counts the changes to the facts above, so that a stale copy
	// relayed late is recognised.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Gateway is one cluster's gateway: where the other gateways of its VPCs send
// their traffic, and what it has programmed. Each cluster's gateway writes its
// own; Fornax relays it up the tree and out to the clusters sharing a VPC.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=gw,categories=fornax
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="VPCs",type=string,JSONPath=`.status.vpcs`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GatewaySpec   `json:"spec"`
	Status GatewayStatus `json:"status,omitempty"`
}

// GatewayList is a list of Gateways.
//
// +kubebuilder:object:root=true
type GatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Gateway `json:"items"`
}
