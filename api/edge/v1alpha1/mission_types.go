package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Condition types of a Mission.
const (
	// MissionAccepted is True when the spec is valid and its placement has been
	// evaluated; False, with a message naming the problem, when it cannot be.
	MissionAccepted = "Accepted"
	// MissionReady is True when every targeted cluster reports every resource
	// ready; False when any reports a failure or is still progressing; Unknown
	// when any targeted cluster cannot be reached.
	MissionReady = "Ready"
	// MissionRelayed is set on a parent's mission stored in a middle cluster:
	// True when the middle cluster only relays it to clusters below, False
	// when it is also applied there.
	MissionRelayed = "Relayed"
	// MissionDeleting is True while a deleted mission waits for the clusters
	// below that may hold it to confirm its deletion (an offline cluster
	// confirms when it reconnects; removing the cluster releases the wait).
	MissionDeleting = "Deleting"
)

// DeletionPolicy says what happens to a mission's resources in a cluster when
// the mission is deleted or stops targeting that cluster.
// +kubebuilder:validation:Enum=Delete;Orphan
type DeletionPolicy string

const (
	// DeletionPolicyDelete deletes the resources the mission applied.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyOrphan leaves them in place, no longer managed by Fornax.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
)

// ClusterPhase is where a mission stands in one cluster.
// +kubebuilder:validation:Enum=Pending;Applied;Ready;Failed;Deleting;Unknown
type ClusterPhase string

const (
	// PhasePending means the mission has not reached the cluster yet.
	PhasePending ClusterPhase = "Pending"
	// PhaseApplied means every resource was applied; some are not ready yet.
	PhaseApplied ClusterPhase = "Applied"
	// PhaseReady means every resource was applied and is ready.
	PhaseReady ClusterPhase = "Ready"
	// PhaseFailed means a resource could not be applied or failed.
	PhaseFailed ClusterPhase = "Failed"
	// PhaseDeleting means the mission's resources are being removed.
	PhaseDeleting ClusterPhase = "Deleting"
	// PhaseUnknown means the cluster cannot be reached; the entry's
	// LastUpdateTime says since when.
	PhaseUnknown ClusterPhase = "Unknown"
)

// MaxClusterStatuses bounds MissionStatus.Clusters so that a mission targeting
// thousands of clusters stays far below the API server's object size limit. The
// summary always counts every cluster.
const MaxClusterStatuses = 500

// Placement selects clusters of the tree. A cluster is selected when it is named
// in Clusters, or matches ClusterSelector, or lies in the subtree of a cluster
// named in Subtrees; and it is not named in Exclude. An empty placement selects
// every cluster.
// +kubebuilder:validation:XValidation:rule="!has(self.clusters) || !has(self.exclude) || !self.clusters.exists(c, c in self.exclude)",message="a cluster cannot be both in clusters and in exclude"
type Placement struct {
	// Clusters names clusters to select.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Clusters []string `json:"clusters,omitempty"`
	// ClusterSelector selects clusters by their EdgeCluster labels, including
	// Fornax's built-in edge.fornax.io/* labels.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`
	// Subtrees names clusters whose whole subtree (the cluster and every
	// cluster below it) is selected.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Subtrees []string `json:"subtrees,omitempty"`
	// Exclude names clusters never to select, whatever else matches them.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Exclude []string `json:"exclude,omitempty"`
}

// MissionSpec is what to run and where.
type MissionSpec struct {
	// Resources are ordinary Kubernetes manifests, applied in each selected
	// cluster with server-side apply. Namespaced resources land in the
	// mission's namespace. Run one-off work as a Job: no field runs a command
	// on an edge host. Each needs apiVersion, kind and metadata.name, and must
	// not set metadata.namespace or be one of Fornax's own kinds: the admission
	// policy installed with the CRDs (config/admission) checks this, because
	// CRD validation rules cannot see inside embedded manifests.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	Resources []runtime.RawExtension `json:"resources"`

	// Placement selects the clusters to run in.
	// +optional
	Placement Placement `json:"placement,omitempty"`

	// DeletionPolicy says what happens to the resources in a cluster when the
	// mission is deleted or no longer selects that cluster.
	// +kubebuilder:default=Delete
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// MissionSummaryCounts counts the targeted clusters by phase. It always covers
// every targeted cluster, even when Clusters is truncated.
type MissionSummaryCounts struct {
	// Targeted is the number of clusters the placement selects.
	Targeted int32 `json:"targeted"`
	// Applied is the number of clusters where every resource was applied.
	Applied int32 `json:"applied"`
	// Ready is the number of clusters where every resource is ready.
	Ready int32 `json:"ready"`
	// Failed is the number of clusters that report a failure.
	Failed int32 `json:"failed"`
	// Unknown is the number of targeted clusters that cannot be reached.
	Unknown int32 `json:"unknown"`
}

// ResourceStatus is the state of one of the mission's resources in one cluster.
type ResourceStatus struct {
	// APIVersion of the resource.
	APIVersion string `json:"apiVersion"`
	// Kind of the resource.
	Kind string `json:"kind"`
	// Name of the resource.
	Name string `json:"name"`
	// Namespace of the resource; empty for cluster-scoped resources.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Status is the resource's kstatus status (Current, InProgress, Failed, ...).
	Status string `json:"status"`
	// Message explains the status.
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterStatus is where the mission stands in one cluster.
type ClusterStatus struct {
	// Cluster is the EdgeCluster name.
	Cluster string `json:"cluster"`
	// Phase summarises the mission in this cluster.
	Phase ClusterPhase `json:"phase"`
	// Message explains the phase, for example the error that failed it.
	// +optional
	Message string `json:"message,omitempty"`
	// Generation is the mission generation applied in this cluster.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// Resources is the state of each resource in this cluster.
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Resources []ResourceStatus `json:"resources,omitempty"`
	// DriftCorrections counts the times an applied object was found changed by
	// someone else in this cluster and re-applied.
	// +optional
	DriftCorrections int64 `json:"driftCorrections,omitempty"`
	// LastUpdateTime is when this entry last changed; for PhaseUnknown, since
	// when the cluster has been unreachable.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
}

// MissionStatus is where the mission stands across the tree.
type MissionStatus struct {
	// ObservedGeneration is the spec generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are the latest observations; see the Mission* condition types.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Summary counts the targeted clusters by phase.
	// +optional
	Summary MissionSummaryCounts `json:"summary,omitempty"`
	// Clusters holds one entry per targeted cluster, failures first, at most
	// MaxClusterStatuses of them; ClustersOmitted counts the rest.
	// +kubebuilder:validation:MaxItems=500
	// +listType=map
	// +listMapKey=cluster
	// +optional
	Clusters []ClusterStatus `json:"clusters,omitempty"`
	// ClustersOmitted is the number of targeted clusters left out of Clusters.
	// +optional
	ClustersOmitted int32 `json:"clustersOmitted,omitempty"`
}

// Mission is a set of Kubernetes manifests and a placement: Fornax applies the
// manifests in exactly the selected clusters of the tree, keeps them applied,
// and reports their state per cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=mis,categories=fornax
// +kubebuilder:printcolumn:name="Targeted",type=integer,JSONPath=`.status.summary.targeted`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.summary.ready`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.summary.failed`
// +kubebuilder:printcolumn:name="Unknown",type=integer,JSONPath=`.status.summary.unknown`
// +kubebuilder:printcolumn:name="Applied",type=integer,JSONPath=`.status.summary.applied`,priority=1
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Mission struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MissionSpec `json:"spec"`
	// +optional
	Status MissionStatus `json:"status,omitempty"`
}

// MissionList is a list of Missions.
//
// +kubebuilder:object:root=true
type MissionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Mission `json:"items"`
}
