package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Built-in labels that Fornax sets on every EdgeCluster so that placements can
// select clusters by their place in the tree. Topology labels (region, site,
// organisation, ...) are ordinary labels set by the cluster's owner at join.
const (
	// LabelClusterName holds the cluster's own name.
	LabelClusterName = "edge.fornax.io/name"
	// LabelParent holds the name of the cluster's parent.
	LabelParent = "edge.fornax.io/parent"
	// LabelDepth holds the cluster's depth in the tree: the root's children are at depth 1.
	LabelDepth = "edge.fornax.io/depth"
	// LabelDistro holds the detected Kubernetes distribution (see Distro).
	LabelDistro = "edge.fornax.io/distro"
)

// Condition types of an EdgeCluster.
const (
	// EdgeClusterConnected is True while the cluster's link to its parent is up
	// and every link between it and this API server's cluster is up. It is False
	// when a link on that path is down, with the reason naming which one.
	EdgeClusterConnected = "Connected"
	// EdgeClusterReady is True when the cluster's API server answers its agent
	// and at least one of its nodes is Ready. It is Unknown while the cluster is
	// not Connected: nothing fresh is known about it.
	EdgeClusterReady = "Ready"
)

// ConnectionState summarises how current the information about a cluster is.
// +kubebuilder:validation:Enum=Pending;Connected;Offline;Unknown
type ConnectionState string

const (
	// StatePending means the cluster is registered but has never connected.
	StatePending ConnectionState = "Pending"
	// StateConnected means the cluster's reports are arriving.
	StateConnected ConnectionState = "Connected"
	// StateOffline means the cluster's own link to its parent is down.
	StateOffline ConnectionState = "Offline"
	// StateUnknown means a link above the cluster is down, so nothing current is known about it.
	StateUnknown ConnectionState = "Unknown"
)

// Distro is the Kubernetes distribution a cluster runs.
// +kubebuilder:validation:Enum=k8s;k3s;other
type Distro string

const (
	// DistroKubernetes is upstream Kubernetes (kubeadm and the like).
	DistroKubernetes Distro = "k8s"
	// DistroK3s is K3s or another kine-backed, K3s-style cluster.
	DistroK3s Distro = "k3s"
	// DistroOther is any distribution Fornax does not recognise.
	DistroOther Distro = "other"
)

// EdgeClusterSpec is what the cluster's owner decides about it.
type EdgeClusterSpec struct {
	// Unschedulable keeps missions from being placed on this cluster, as
	// cordoning does for a node. Missions already there stay.
	// +optional
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// NodeSummary counts a cluster's nodes.
type NodeSummary struct {
	// Total is the number of nodes.
	Total int32 `json:"total"`
	// Ready is the number of nodes whose Ready condition is True.
	Ready int32 `json:"ready"`
}

// MissionSummary counts the missions applied in one cluster.
type MissionSummary struct {
	// Total is the number of missions that target this cluster.
	Total int32 `json:"total"`
	// Ready is the number of those whose resources are all ready.
	Ready int32 `json:"ready"`
	// Failed is the number of those that could not be applied.
	Failed int32 `json:"failed"`
}

// LocalMission is a mission created at a cluster below, as reported.
type LocalMission struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Origin is the cluster where the mission was created.
	Origin string `json:"origin"`
	// Phase in the cluster: Applied, Ready, Failed or Deleting.
	Phase ClusterPhase `json:"phase"`
}

// OrphanedMission is a mission the cluster holds from its parent that the
// parent no longer knows (it lost its state, or was restored from an older
// backup). Its workloads keep running until DeleteAfter; sent again by then,
// it is adopted again.
type OrphanedMission struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Since is when the parent first said it does not know the mission.
	Since metav1.Time `json:"since"`
	// DeleteAfter is when the cluster deletes it (the agent's --orphan-grace
	// after Since).
	DeleteAfter metav1.Time `json:"deleteAfter"`
}

// EdgeClusterStatus is what Fornax observed about the cluster.
type EdgeClusterStatus struct {
	// ObservedGeneration is the spec generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Parent is the name of the cluster this one is joined to; empty for the root.
	// +optional
	Parent string `json:"parent,omitempty"`
	// Path lists the cluster names from the root to this cluster, joined by "/",
	// for example "root/eu/berlin-3".
	// +optional
	Path string `json:"path,omitempty"`
	// Depth is the number of links between the root and this cluster.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Depth int32 `json:"depth,omitempty"`

	// State says how current this status is.
	// +optional
	State ConnectionState `json:"state,omitempty"`
	// Conditions are the latest observations; see the EdgeCluster* condition types.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// KubernetesVersion is the version the cluster's API server reports.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Distro is the detected Kubernetes distribution.
	// +optional
	Distro Distro `json:"distro,omitempty"`
	// AgentVersion is the version of Fornax's agent (fornaxd) in the
	// cluster, as it reports it: what an upgrade down the tree has reached.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`

	// Nodes counts the cluster's nodes.
	// +optional
	Nodes *NodeSummary `json:"nodes,omitempty"`
	// Capacity is the sum of the nodes' capacity.
	// +optional
	Capacity map[string]resource.Quantity `json:"capacity,omitempty"`
	// Allocatable is the sum of the nodes' allocatable resources.
	// +optional
	Allocatable map[string]resource.Quantity `json:"allocatable,omitempty"`
	// Missions counts the missions that target this cluster.
	// +optional
	Missions *MissionSummary `json:"missions,omitempty"`
	// LocalMissions lists missions running in the cluster that were created
	// below this API server's cluster (by a middle cluster's operators):
	// shown here, never changed from here. At most 100.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	LocalMissions []LocalMission `json:"localMissions,omitempty"`
	// OrphanedMissions lists missions the cluster keeps running although no
	// parent knows them any more; each is deleted after its grace period
	// unless it is created again. At most 100.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	OrphanedMissions []OrphanedMission `json:"orphanedMissions,omitempty"`

	// LastHeartbeatTime is when the cluster was last heard from, directly or
	// through its ancestors.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// LastReportTime is when the cluster last reported a change of its status.
	// +optional
	LastReportTime *metav1.Time `json:"lastReportTime,omitempty"`
}

// EdgeCluster is one Kubernetes cluster of the tree below this API server's
// cluster. Fornax creates it when the cluster joins and keeps its status.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ec;ecs,categories=fornax
// +kubebuilder:printcolumn:name="Parent",type=string,JSONPath=`.status.parent`
// +kubebuilder:printcolumn:name="Depth",type=integer,JSONPath=`.status.depth`,priority=1
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.kubernetesVersion`
// +kubebuilder:printcolumn:name="Distro",type=string,JSONPath=`.status.distro`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.nodes.total`
// +kubebuilder:printcolumn:name="Nodes-Ready",type=integer,JSONPath=`.status.nodes.ready`
// +kubebuilder:printcolumn:name="Missions",type=integer,JSONPath=`.status.missions.total`,priority=1
// +kubebuilder:printcolumn:name="Fornax",type=string,JSONPath=`.status.agentVersion`,priority=1
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.status.path`,priority=1
// +kubebuilder:printcolumn:name="Last-Seen",type=date,JSONPath=`.status.lastHeartbeatTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1123 label (at most 63 lowercase letters, digits and '-'): it is used in label values and tree paths"
type EdgeCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec EdgeClusterSpec `json:"spec,omitempty"`
	// +optional
	Status EdgeClusterStatus `json:"status,omitempty"`
}

// EdgeClusterList is a list of EdgeClusters.
//
// +kubebuilder:object:root=true
type EdgeClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EdgeCluster `json:"items"`
}
