package link

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// MissionKey identifies a mission's state within a cluster's state: a
// mission created at another cluster may share its namespace and name.
func MissionKey(m *linkpb.MissionState) string {
	return m.GetNamespace() + "/" + m.GetName() + "@" + m.GetOrigin()
}

// sortMissions puts a state's missions in MissionKey order, the canonical
// order digests and comparisons use.
func sortMissions(s *linkpb.ClusterState) {
	slices.SortFunc(s.Missions, func(a, b *linkpb.MissionState) int { return strings.Compare(MissionKey(a), MissionKey(b)) })
}

// DeltaState returns what an incremental report carries for a cluster whose
// state went from old to now: now's facts with only the missions that
// changed, and the keys of those removed. When most missions changed, now
// itself is smaller and is returned.
func DeltaState(old, now *linkpb.ClusterState) *linkpb.ClusterState {
	before := map[string]*linkpb.MissionState{}
	for _, m := range old.GetMissions() {
		before[MissionKey(m)] = m
	}
	d := proto.CloneOf(now)
	d.Missions, d.MissionsDelta = nil, true
	for _, m := range now.GetMissions() {
		k := MissionKey(m)
		if o, ok := before[k]; !ok || !proto.Equal(o, m) {
			d.Missions = append(d.Missions, m)
		}
		delete(before, k)
	}
	for k := range before {
		d.MissionsRemoved = append(d.MissionsRemoved, k)
	}
	slices.Sort(d.MissionsRemoved)
	if len(d.Missions)+len(d.MissionsRemoved) >= len(now.GetMissions()) && len(now.GetMissions()) > 0 {
		return now
	}
	return d
}

// ApplyDelta merges an incremental state into the previous full one and
// returns the new full state (missions in MissionKey order). A full state is
// returned as is.
func ApplyDelta(old, d *linkpb.ClusterState) (*linkpb.ClusterState, error) {
	if !d.GetMissionsDelta() {
		return d, nil
	}
	if old == nil {
		return nil, fmt.Errorf("an incremental state of cluster %s without a previous one", d.GetName())
	}
	merged := map[string]*linkpb.MissionState{}
	for _, m := range old.GetMissions() {
		merged[MissionKey(m)] = m
	}
	for _, k := range d.GetMissionsRemoved() {
		delete(merged, k)
	}
	for _, m := range d.GetMissions() {
		merged[MissionKey(m)] = m
	}
	out := proto.CloneOf(d)
	out.MissionsDelta, out.MissionsRemoved, out.Missions = false, nil, make([]*linkpb.MissionState, 0, len(merged))
	for _, m := range merged {
		out.Missions = append(out.Missions, m)
	}
	sortMissions(out)
	return out, nil
}
