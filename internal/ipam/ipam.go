// Package ipam hands out the IPv4 addresses of a node's subnets to pod
// interfaces, and remembers them on disk across invocations of the CNI
// plugin and restarts of the node's services.
//
// A Store is a root directory (the CNI plugin's dataDir, by default
// /var/lib/fornax/ipam) with one directory per subnet, named after the
// Subnet object. In a subnet's directory:
//
//	lock           flock'ed for every read and change: concurrent plugin
//	               processes never hand out one address twice
//	last_reserved  the address handed out last; the next search starts
//	               after it, so a released address is not reused at once
//	10.1.1.7       one file per allocated address: a JSON Allocation (the
//	               container ID and interface name that hold it, and the
//	               caller's Data)
//
// Files are replaced by rename, so a reader never sees half a record. The
// network address, the gateway (the first address after it,
// netplane.GatewayAddr) and the broadcast address are never handed out.
//
// An allocation carries the caller's Data so that whoever undoes what was
// built with the address needs nothing but the record: the CNI plugin's DEL
// works while the API server is unreachable or the pod is gone.
package ipam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

const (
	lockFile  = "lock"
	lastFile  = "last_reserved"
	tmpPrefix = ".tmp-"
)

// ErrFull is matched (errors.Is) by the error of an allocation from a
// subnet whose every usable address is in use.
var ErrFull = errors.New("subnet has no free address")

// FullError is the error of an allocation from a full subnet.
type FullError struct {
	Subnet string
	CIDR   netip.Prefix
	// InUse and Usable count the addresses pods hold and may hold.
	InUse, Usable int
}

func (e *FullError) Error() string {
	return fmt.Sprintf("subnet %s (%s) has no free address: %d of %d in use", e.Subnet, e.CIDR, e.InUse, e.Usable)
}

// Is makes errors.Is(err, ErrFull) true.
func (e *FullError) Is(target error) bool { return target == ErrFull }

// Allocation is an address held by one interface of one container.
type Allocation struct {
	// Addr is the address (the record's file name).
	Addr netip.Addr `json:"-"`
	// ContainerID and IfName identify the holder. Both are empty for a
	// record that cannot be read (written by something else, or damaged):
	// its address stays in use until the record is released.
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Subnet and CIDR are the pool's.
	Subnet string       `json:"subnet"`
	CIDR   netip.Prefix `json:"cidr"`
	// Data is the caller's, kept verbatim (JSON).
	Data json.RawMessage `json:"data,omitempty"`
}

// Prefix is the address with the subnet's prefix length, as the interface
// carries it.
func (a Allocation) Prefix() netip.Prefix { return netip.PrefixFrom(a.Addr, a.CIDR.Bits()) }

func (a Allocation) heldBy(containerID, ifName string) bool {
	return a.ContainerID == containerID && a.IfName == ifName
}

// Store is the allocations of every subnet of a node, under one root
// directory.
type Store struct {
	// Root holds one directory per subnet; it is created when needed.
	Root string
}

// Pool is the allocator of one subnet.
type Pool struct {
	store  Store
	subnet string
	cidr   netip.Prefix
}

// Pool returns the allocator of the named subnet, whose range is cidr (an
// IPv4 network address with a prefix length of at most 30). Nothing is
// written until an address is allocated.
func (s Store) Pool(subnet string, cidr netip.Prefix) (*Pool, error) {
	if err := checkSubnetName(subnet); err != nil {
		return nil, err
	}
	if err := checkCIDR(cidr); err != nil {
		return nil, fmt.Errorf("subnet %s: %w", subnet, err)
	}
	return &Pool{store: s, subnet: subnet, cidr: cidr}, nil
}

// checkSubnetName refuses names that are not a single path element; a
// Kubernetes object name never is one of those.
func checkSubnetName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") || len(name) > 253 {
		return fmt.Errorf("invalid subnet name %q", name)
	}
	return nil
}

func (s Store) dir(subnet string) string { return filepath.Join(s.Root, subnet) }

// Allocate gives an address of the subnet to the interface ifName of the
// container, and records data with it. If the pair holds an address of
// the subnet already, that one is returned (a repeated CNI ADD), with
// data updated. When every usable address is in use the error is a
// *FullError.
func (p *Pool) Allocate(containerID, ifName string, data json.RawMessage) (Allocation, error) {
	if containerID == "" || ifName == "" {
		return Allocation{}, fmt.Errorf("allocating in subnet %s: container ID and interface name are required", p.subnet)
	}
	if len(data) > 0 && !json.Valid(data) {
		return Allocation{}, fmt.Errorf("allocating in subnet %s for %s/%s: data is not JSON", p.subnet, containerID, ifName)
	}
	var out Allocation
	err := p.store.locked(p.subnet, true, func(dir string) error {
		allocs, err := readLocked(dir, p.subnet)
		if err != nil {
			return err
		}
		removeTempsLocked(dir)
		used := make(map[netip.Addr]bool, len(allocs))
		for _, a := range allocs {
			switch {
			case a.heldBy(containerID, ifName) && a.CIDR == p.cidr:
				out = a
				if !bytes.Equal(a.Data, data) {
					out.Data = data
					return writeLocked(dir, out)
				}
				return nil
			case a.heldBy(containerID, ifName):
				// Held in an earlier subnet of the same name, deleted and
				// created again with another range.
				if err := removeLocked(dir, a.Addr); err != nil {
					return err
				}
			default:
				used[a.Addr] = true
			}
		}
		addr, ok := next(p.cidr, func(a netip.Addr) bool { return used[a] }, readLastLocked(dir))
		if !ok {
			inUse := 0
			for a := range used {
				if usable(p.cidr, a) {
					inUse++
				}
			}
			return &FullError{Subnet: p.subnet, CIDR: p.cidr, InUse: inUse, Usable: usableCount(p.cidr)}
		}
		out = Allocation{Addr: addr, ContainerID: containerID, IfName: ifName, Subnet: p.subnet, CIDR: p.cidr, Data: data}
		if err := writeLocked(dir, out); err != nil {
			return err
		}
		if err := writeFileLocked(dir, lastFile, []byte(addr.String())); err != nil {
			return fmt.Errorf("recording the last reserved address of subnet %s: %w", p.subnet, err)
		}
		return nil
	})
	if err != nil {
		var full *FullError
		if errors.As(err, &full) {
			return Allocation{}, err
		}
		return Allocation{}, fmt.Errorf("allocating in subnet %s for %s/%s: %w", p.subnet, containerID, ifName, err)
	}
	return out, nil
}

// Get returns the address of the subnet the pair holds, and false if it
// holds none.
func (p *Pool) Get(containerID, ifName string) (Allocation, bool, error) {
	var out Allocation
	var found bool
	err := p.store.locked(p.subnet, false, func(dir string) error {
		allocs, err := readLocked(dir, p.subnet)
		for _, a := range allocs {
			if a.heldBy(containerID, ifName) {
				out, found = a, true
				break
			}
		}
		return err
	})
	if err != nil {
		return Allocation{}, false, fmt.Errorf("reading the allocations of subnet %s: %w", p.subnet, err)
	}
	return out, found, nil
}

// Release frees the addresses of the subnet the pair holds. Releasing
// what is not held is no error.
func (p *Pool) Release(containerID, ifName string) error {
	err := p.store.locked(p.subnet, true, func(dir string) error {
		allocs, err := readLocked(dir, p.subnet)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.heldBy(containerID, ifName) {
				if err := removeLocked(dir, a.Addr); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("releasing %s/%s in subnet %s: %w", containerID, ifName, p.subnet, err)
	}
	return nil
}

// List returns every allocation of the subnet, by address.
func (p *Pool) List() ([]Allocation, error) {
	var out []Allocation
	err := p.store.locked(p.subnet, false, func(dir string) (err error) {
		out, err = readLocked(dir, p.subnet)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the allocations of subnet %s: %w", p.subnet, err)
	}
	return out, nil
}

// Find returns the addresses the pair holds in any subnet of the store.
func (s Store) Find(containerID, ifName string) ([]Allocation, error) {
	all, err := s.List()
	var out []Allocation
	for _, a := range all {
		if a.heldBy(containerID, ifName) {
			out = append(out, a)
		}
	}
	return out, err
}

// List returns every allocation of every subnet of the store, by subnet
// and address. A subnet that cannot be read is reported in the error; the
// others are still returned.
func (s Store) List() ([]Allocation, error) {
	entries, err := os.ReadDir(s.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the subnets of %s: %w", s.Root, err)
	}
	var out []Allocation
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || checkSubnetName(e.Name()) != nil {
			continue
		}
		err := s.locked(e.Name(), false, func(dir string) error {
			allocs, err := readLocked(dir, e.Name())
			out = append(out, allocs...)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the allocations of subnet %s: %w", e.Name(), err))
		}
	}
	return out, errors.Join(errs...)
}

// Release frees a's address if the same pair still holds it (it may have
// been released and handed to another since a was read). Releasing what
// is not held is no error.
func (s Store) Release(a Allocation) error {
	if err := checkSubnetName(a.Subnet); err != nil {
		return err
	}
	err := s.locked(a.Subnet, true, func(dir string) error {
		// A damaged record reads as held by nobody, as a did.
		cur, err := readRecord(dir, a.Subnet, a.Addr)
		if errors.Is(err, fs.ErrNotExist) || !cur.heldBy(a.ContainerID, a.IfName) {
			return nil
		}
		return removeLocked(dir, a.Addr)
	})
	if err != nil {
		return fmt.Errorf("releasing %s of %s/%s in subnet %s: %w", a.Addr, a.ContainerID, a.IfName, a.Subnet, err)
	}
	return nil
}

// locked runs f with the subnet's lock held (exclusive for a writer),
// creating the subnet's directory first for a writer. A reader of a subnet
// that has no directory sees no allocations.
func (s Store) locked(subnet string, write bool, f func(dir string) error) error {
	dir := s.dir(subnet)
	if write {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	fl, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if !write && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer fl.Close()
	how := syscall.LOCK_SH
	if write {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(fl.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("locking %s: %w", fl.Name(), err)
	}
	// Closing the file releases the lock.
	return f(dir)
}

// readLocked reads every record of a subnet's directory, by address.
func readLocked(dir, subnet string) ([]Allocation, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Allocation
	for _, e := range entries {
		addr, err := netip.ParseAddr(e.Name())
		if err != nil || !addr.Is4() || !e.Type().IsRegular() {
			continue
		}
		a, err := readRecord(dir, subnet, addr)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		out = append(out, a) // a damaged record still holds its address
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, nil
}

// readRecord reads the record of addr. A record that is not an Allocation
// is returned with its address and subnet only, and an error.
func readRecord(dir, subnet string, addr netip.Addr) (Allocation, error) {
	b, err := os.ReadFile(filepath.Join(dir, addr.String()))
	if err != nil {
		return Allocation{}, err
	}
	var a Allocation
	if err := json.Unmarshal(b, &a); err != nil {
		return Allocation{Addr: addr, Subnet: subnet}, fmt.Errorf("record %s: %w", addr, err)
	}
	a.Addr, a.Subnet = addr, subnet
	return a, nil
}

func writeLocked(dir string, a Allocation) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return writeFileLocked(dir, a.Addr.String(), b)
}

// writeFileLocked replaces a file by rename, so that a reader (or a crash)
// sees the old content or the new, never a part.
func writeFileLocked(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

func removeLocked(dir string, addr netip.Addr) error {
	err := os.Remove(filepath.Join(dir, addr.String()))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeTempsLocked removes what a writer that died left half written.
// The exclusive lock is held: no writer is at work.
func removeTempsLocked(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// readLastLocked returns the address handed out last, or the zero Addr.
func readLastLocked(dir string) netip.Addr {
	b, err := os.ReadFile(filepath.Join(dir, lastFile))
	if err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		return netip.Addr{}
	}
	return a
}
