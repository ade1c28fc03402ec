package link

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func versions(n int, digest func(i int) string) []*linkpb.ObjectVersion {
	out := make([]*linkpb.ObjectVersion, n)
	for i := range out {
		out[i] = &linkpb.ObjectVersion{Kind: "Mission", Namespace: "ns", Name: fmt.Sprintf("m-%04d", i), Digest: digest(i)}
	}
	return out
}

func TestHaveDigestsFindTheBucketsThatDiffer(t *testing.T) {
	same := func(int) string { return "d1" }
	a := versions(1000, same)
	b := versions(1000, same)
	slices.Reverse(b) // order does not matter
	if d := DifferingBuckets(HaveDigests(a), HaveDigests(b)); len(d) != 0 {
		t.Fatalf("equal sets differ in buckets %v", d)
	}
	if got := len(HaveDigests(a)); got != HaveBuckets*HaveDigestBytes {
		t.Fatalf("digest is %d bytes", got)
	}

	changed := versions(1000, func(i int) string {
		if i == 17 {
			return "d2"
		}
		return "d1"
	})
	d := DifferingBuckets(HaveDigests(a), HaveDigests(changed))
	if want := []uint32{Bucket(ObjectKey("Mission", "ns", "m-0017"))}; !slices.Equal(d, want) {
		t.Errorf("one changed object: buckets %v, want %v", d, want)
	}

	// A missing object and an extra one are differences too.
	if d := DifferingBuckets(HaveDigests(a), HaveDigests(a[1:])); !slices.Equal(d, []uint32{Bucket(ObjectKey("Mission", "ns", "m-0000"))}) {
		t.Errorf("one missing object: buckets %v", d)
	}
	if d := DifferingBuckets(HaveDigests(nil), HaveDigests(a[:1])); len(d) != 1 {
		t.Errorf("empty vs one object: buckets %v", d)
	}
}

func TestObjectKeysTellKindsApart(t *testing.T) {
	tests := []struct {
		kind, namespace, name string
		want                  string
	}{
		{"Mission", "ns", "web", "Mission/ns/web"},
		{"VPC", "", "blue", "VPC//blue"},
		{"Subnet", "", "blue", "Subnet//blue"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := ObjectKey(tt.kind, tt.namespace, tt.name)
		if got != tt.want {
			t.Errorf("ObjectKey(%q, %q, %q) = %q, want %q", tt.kind, tt.namespace, tt.name, got, tt.want)
		}
		if seen[got] {
			t.Errorf("key %q made twice", got)
		}
		seen[got] = true
		if k, ns, n := SplitObjectKey(got); k != tt.kind || ns != tt.namespace || n != tt.name {
			t.Errorf("SplitObjectKey(%q) = %q, %q, %q", got, k, ns, n)
		}
		v := &linkpb.ObjectVersion{Kind: tt.kind, Namespace: tt.namespace, Name: tt.name}
		if HaveKey(v) != got {
			t.Errorf("HaveKey of %v = %q, want %q", v, HaveKey(v), got)
		}
	}
}
