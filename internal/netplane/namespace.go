package netplane

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// netnsDir holds the named network namespaces, where `ip netns` and
// netns.NewNamed put them (/var/run is a link to /run).
const netnsDir = "/run/netns"

// nsfsMagic is the statfs type of a namespace file (NSFS_MAGIC): a named
// namespace whose bind mount is missing is a plain file instead.
const nsfsMagic = 0x6e736673

// errNotNamespace says a file under netnsDir is not a mounted namespace, as
// when a process died between creating the file and mounting it.
var errNotNamespace = errors.New("not a mounted network namespace")

// onThrowawayThread runs f on a locked OS thread that dies with it. f may
// change the thread's namespaces freely: the thread is never unlocked, so the
// runtime ends it instead of handing it to other goroutines, and nothing has
// to be restored (restoring can fail, and then a goroutine would run in the
// wrong namespace).
func onThrowawayThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- f()
	}()
	return <-errc
}

// inNamespace runs f on a throwaway thread inside ns: sockets f opens and
// /proc/sys/net files it writes belong to ns.
func inNamespace(ns netns.NsHandle, f func() error) error {
	return onThrowawayThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("entering network namespace: %w", err)
		}
		return f()
	})
}

// listNamedNS returns the names under netnsDir.
func listNamedNS() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing named network namespaces in %s: %w", netnsDir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// openNamedNS opens a named network namespace. The error wraps
// fs.ErrNotExist if there is none, errNotNamespace if the name is a leftover
// file.
func openNamedNS(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(h), &st); err != nil {
		_ = h.Close()
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	if st.Type != nsfsMagic {
		_ = h.Close()
		return netns.None(), fmt.Errorf("opening network namespace %s: %w", name, errNotNamespace)
	}
	return h, nil
}

// ensureNamedNS opens a named network namespace, creating it if it is
// missing and replacing a leftover file that is not one.
func ensureNamedNS(name string) (h netns.NsHandle, created bool, err error) {
	h, err = openNamedNS(name)
	switch {
	case err == nil:
		return h, false, nil
	case errors.Is(err, errNotNamespace):
		if err := deleteNamedNS(name); err != nil {
			return netns.None(), false, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return netns.None(), false, err
	}
	h, err = createNamedNS(name)
	return h, err == nil, err
}

// prepareNetnsDir makes netnsDir a shared mount point, as `ip netns add`
// does before it adds a namespace: namespaces mounted there then show in
// other mount namespaces too (a containerised CNI plugin's), and a later
// `ip netns add` finds the mount point made and does not bind-mount the
// directory over namespaces already in it, which would hide them (they
// could then be neither used by name nor removed).
func prepareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", netnsDir, err)
	}
	for made := false; ; made = true {
		err := syscall.Mount("", netnsDir, "none", syscall.MS_SHARED|syscall.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) || made {
			return fmt.Errorf("making %s a shared mount: %w", netnsDir, err)
		}
		// EINVAL: not a mount point yet.
		if err := syscall.Mount(netnsDir, netnsDir, "none", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s on itself: %w", netnsDir, err)
		}
	}
}

// createNamedNS creates a named network namespace without moving any
// goroutine's thread into it.
func createNamedNS(name string) (netns.NsHandle, error) {
	if err := prepareNetnsDir(); err != nil {
		return netns.None(), fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	var h netns.NsHandle
	err := onThrowawayThread(func() (err error) {
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		if !errors.Is(err, fs.ErrExist) {
			// The file may be there without its mount: do not leave it.
			_ = os.Remove(filepath.Join(netnsDir, name))
		}
		return netns.None(), fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	return h, nil
}

// deleteNamedNS unmounts and removes a named network namespace; the kernel
// destroys it, and the links in it, once nothing else holds it. Nothing
// there is not an error.
func deleteNamedNS(name string) error {
	path := filepath.Join(netnsDir, name)
	err := syscall.Unmount(path, syscall.MNT_DETACH)
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("removing network namespace %s: %w (its mount is hidden under a mount of %s made after it: see /proc/self/mountinfo)", name, err, netnsDir)
		}
		return fmt.Errorf("removing network namespace %s: %w", name, err)
	}
	return nil
}

// ensureSysctl sets a /proc/sys file of namespace ns to value, if it has
// another, and reports whether it did.
func ensureSysctl(ns netns.NsHandle, path, value string) (changed bool, err error) {
	err = inNamespace(ns, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == value {
			return nil
		}
		changed = true
		return os.WriteFile(path, []byte(value), 0o644)
	})
	if err != nil {
		return false, fmt.Errorf("setting %s to %s: %w", path, value, err)
	}
	return changed, nil
}
