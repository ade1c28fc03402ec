// Package link is the protocol between a child cluster's fornaxd (agent role)
// and its parent's fornaxd (hub role): message limits and validation, TLS
// configuration with a pinned CA, the state digest, and the child's connection
// loop. The messages themselves are protocol buffers in linkpb, generated from
// proto/fornax/link/v1/link.proto.
//
// # Transport
//
// gRPC over TLS 1.3 (nothing older is accepted), one TCP connection per child.
// The child always dials: edge sites sit behind NAT. Both sides send HTTP/2
// keepalive pings after KeepaliveTime of silence and drop the connection when
// one is not answered within KeepaliveTimeout, so a dead link is noticed within
// KeepaliveTime+KeepaliveTimeout even when nothing else is sent. A frame larger
// than MaxFrameBytes ends the stream.
//
// # Identity
//
// Join is the only call without a client certificate. The child pins the
// parent's CA by the SHA-256 of its public key (certs.Hash) and presents a
// bootstrap token; the parent answers with a client certificate whose common
// name is the cluster's name (organisation certs.Organization). Every other
// call is authenticated by that certificate: the stream speaks for exactly the
// cluster it names, and a Hello naming another cluster is refused. Renew
// replaces the certificate before it expires over the same authentication;
// open streams are not interrupted.
//
// # Frames of the Connect stream
//
//	child  → parent  Hello       first frame: protocol version, cluster name, epoch (random per
//	                             fornaxd start), last report seq sent, objects held (kind,
//	                             namespace, name, generation, digest) or, beyond HaveDirectMax
//	                             objects, 64 bucket digests of them (512 bytes), report/heartbeat
//	                             intervals.
//	parent → child   HaveRequest the buckets whose digests differ from what the parent would send.
//	child  → parent  HaveList    what the child holds in those buckets.
//	parent → child   Welcome     the version both speak (the lower), the epoch echoed, the last
//	                             report seq of that epoch the parent has applied (0: send a full
//	                             report), the parent's name, the child's path and depth.
//	child  → parent  Report      seq (1, 2, 3 … within an epoch, no gaps); full (every cluster of
//	                             the subtree; those not listed are gone) or partial (changes
//	                             since seq-1 plus removed names); one ClusterState per cluster,
//	                             in a partial report with only the missions whose state changed
//	                             (missions_delta, missions_removed), and the cluster's gateway
//	                             (endpoint, key, VPCs, subnets, generation, readiness) if it
//	                             runs one.
//	parent → child   Ack         the highest report seq applied. The child keeps unacknowledged
//	                             changes and folds them into its next report.
//	child  → parent  Heartbeat   every heartbeat interval: the last report seq, a digest of the
//	                             whole subtree state as of that seq, and the child's own summary.
//	parent → child   Resync      the parent's state differs from the digest, or has a gap in seq:
//	                             the child answers with a full report.
//	parent → child   ObjectBatch desired objects (missions; VPCs, Subnets and Gateways) with
//	                             generations, numbered like reports, each named by its kind,
//	                             namespace and name (ObjectKey); each object new or changed,
//	                             deleted (a deletion someone asked for), or orphaned (the parent
//	                             does not know it: a mission is kept and deleted after the
//	                             child's grace unless sent again; a network object is kept).
//	child  → parent  Ack         the highest object batch seq stored; a deleted mission stays at
//	                             the parent (finalizer) until every child that may hold it has
//	                             acknowledged its deletion.
//
// # Resync
//
// Nothing is re-listed unless a side has lost its state. After a reconnect
// the child's Hello says which epoch and seq it has sent and what it holds
// (the list, or bucket digests: then the parent asks for the buckets that
// differ); the parent's Welcome says which report of that epoch it has
// applied. Only reports after that seq travel, folded into one partial report
// carrying only the missions whose state changed; only objects whose digest
// differs travel down. A restarted child (new epoch) or a restarted parent (no
// record of the epoch) leads to one full report, which is counted and
// reported. An unreachable parent never causes a deletion; a parent that has
// lost its state causes orphan notices, not deletions.
//
// # Status writes
//
// Liveness lives in the hub's memory and the stream. The hub writes an
// EdgeCluster's status only when something in it changes (a report with new
// facts, a link going down or up, the readiness grace expiring), never for a
// heartbeat that brings nothing new: an idle tree makes no API writes.
//
// # Protocol versions
//
//	1  2026-11-21  first version: Join, Renew, Connect with Hello/Welcome, Report/Ack,
//	               Heartbeat with digest, ResyncRequest, ObjectBatch, NameCheck; before
//	               any release: bucket digests (HaveRequest/HaveList), mission deltas,
//	               orphan notices, network objects (kind in the object key) and
//	               ClusterState.gateway.
package link
