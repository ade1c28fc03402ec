package hub

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditionEventsOnlyOnTransitions(t *testing.T) {
	c := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: "m"}
	}
	up := []metav1.Condition{c("Connected", metav1.ConditionTrue, "LinkUp"), c("Ready", metav1.ConditionTrue, "NodesReady")}
	down := []metav1.Condition{c("Connected", metav1.ConditionFalse, "LinkDown"), c("Ready", metav1.ConditionTrue, "NodesReady")}
	unknown := []metav1.Condition{c("Connected", metav1.ConditionFalse, "LinkDown"), c("Ready", metav1.ConditionUnknown, "NotConnected")}
	for _, tc := range []struct {
		name          string
		before, after []metav1.Condition
		want          []string // reasons
	}{
		{"first status", nil, up, []string{"Connected", "Ready"}},
		{"unchanged", up, up, nil},
		{"link down", up, down, []string{"LinkDown"}},
		{"grace over", down, unknown, []string{"NotConnected"}},
		{"back", unknown, up, []string{"Connected", "Ready"}},
		{"still down", unknown, unknown, nil},
	} {
		got := conditionEvents(tc.before, tc.after, "Connected", "Ready")
		var reasons []string
		for _, e := range got {
			reasons = append(reasons, e.reason)
		}
		if len(reasons) != len(tc.want) {
			t.Errorf("%s: events %v, want %v", tc.name, reasons, tc.want)
			continue
		}
		for i := range reasons {
			if reasons[i] != tc.want[i] {
				t.Errorf("%s: events %v, want %v", tc.name, reasons, tc.want)
			}
		}
	}
}
