package link

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func clusterWith(n int, phase func(i int) string) *linkpb.ClusterState {
	s := &linkpb.ClusterState{Name: "edge", Connected: true}
	for i := range n {
		s.Missions = append(s.Missions, &linkpb.MissionState{Namespace: "ns", Name: fmt.Sprintf("m-%04d", i), Generation: 1, Phase: phase(i), Origin: "root"})
	}
	return s
}

func TestDeltaCarriesOnlyWhatChanged(t *testing.T) {
	old := clusterWith(1000, func(int) string { return "Ready" })
	now := clusterWith(1000, func(i int) string {
		if i == 7 {
			return "Applied"
		}
		return "Ready"
	})
	now.Missions = now.Missions[1:] // m-0000 removed
	now.Missions = append(now.Missions, &linkpb.MissionState{Namespace: "ns", Name: "new", Generation: 1, Phase: "Applied", Origin: "root"})

	d := DeltaState(old, now)
	if !d.GetMissionsDelta() || len(d.GetMissions()) != 2 || len(d.GetMissionsRemoved()) != 1 || d.GetMissionsRemoved()[0] != "ns/m-0000@root" {
		t.Fatalf("delta: delta %t, %d missions, removed %v", d.GetMissionsDelta(), len(d.GetMissions()), d.GetMissionsRemoved())
	}
	if full, delta := proto.Size(now), proto.Size(d); delta*50 > full {
		t.Errorf("the delta is %d bytes, the full state %d: not much smaller", delta, full)
	}
	merged, err := ApplyDelta(old, d)
	if err != nil {
		t.Fatal(err)
	}
	if !SameFacts(merged, now) {
		t.Error("old + delta differs from the new state")
	}
	if string(Digest([]*linkpb.ClusterState{merged})) != string(Digest([]*linkpb.ClusterState{now})) {
		t.Error("the digests of old + delta and of the new state differ: the heartbeat would ask for a resync every time")
	}
	if _, err := ApplyDelta(nil, d); err == nil {
		t.Error("a delta without a previous state was accepted")
	}
	// Everything changed: the full state is smaller, and is sent.
	all := clusterWith(3, func(int) string { return "Failed" })
	if got := DeltaState(clusterWith(3, func(int) string { return "Ready" }), all); got.GetMissionsDelta() {
		t.Error("a delta was built where every mission changed")
	}
}
