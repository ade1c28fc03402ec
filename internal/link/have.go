package link

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// HaveBuckets is the number of buckets Hello.have_digests divides a child's
// objects into; HaveDigestBytes the size of each bucket's digest.
const (
	HaveBuckets     = 64
	HaveDigestBytes = 8
)

// HaveDirectMax is the most objects a child lists in Hello.have itself:
// beyond, the bucket digests (512 bytes) are smaller.
const HaveDirectMax = 8

// Bucket returns the bucket of an object key (ObjectKey).
func Bucket(key string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return h.Sum32() % HaveBuckets
}

// ObjectKey identifies an object sent down the tree: "kind/namespace/name"
// ("VPC//blue" for a cluster-scoped one). The kind is part of it, so that
// objects of different kinds with the same name (a Subnet and a VPC both
// named "blue") never stand for each other. None of the three parts can hold
// a '/', so SplitObjectKey undoes it.
func ObjectKey(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// SplitObjectKey returns the kind, namespace and name of an ObjectKey.
func SplitObjectKey(key string) (kind, namespace, name string) {
	kind, rest, _ := strings.Cut(key, "/")
	namespace, name, _ = strings.Cut(rest, "/")
	return kind, namespace, name
}

// HaveKey is the key an ObjectVersion is bucketed and compared by.
func HaveKey(v *linkpb.ObjectVersion) string {
	return ObjectKey(v.GetKind(), v.GetNamespace(), v.GetName())
}

// HaveDigests digests a set of objects bucket by bucket: for each bucket, the
// first HaveDigestBytes of the SHA-256 of its objects' keys and digests in
// key order; an empty bucket is all zeros. Parent and child compute it over
// what the child holds and what the parent would send; the buckets that
// differ are the only ones whose entries need to travel.
func HaveDigests(have []*linkpb.ObjectVersion) []byte {
	byBucket := make([][]string, HaveBuckets)
	for _, v := range have {
		key := HaveKey(v)
		byBucket[Bucket(key)] = append(byBucket[Bucket(key)], key+"\x00"+v.GetDigest())
	}
	out := make([]byte, HaveBuckets*HaveDigestBytes)
	for i, lines := range byBucket {
		if len(lines) == 0 {
			continue
		}
		slices.Sort(lines)
		h := sha256.New()
		for _, l := range lines {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(len(l)))
			h.Write(n[:])
			h.Write([]byte(l))
		}
		copy(out[i*HaveDigestBytes:], h.Sum(nil)[:HaveDigestBytes])
	}
	return out
}

// DifferingBuckets returns the buckets whose digests differ.
func DifferingBuckets(a, b []byte) []uint32 {
	var out []uint32
	for i := range uint32(HaveBuckets) {
		lo, hi := i*HaveDigestBytes, (i+1)*HaveDigestBytes
		if string(a[lo:hi]) != string(b[lo:hi]) {
			out = append(out, i)
		}
	}
	return out
}
