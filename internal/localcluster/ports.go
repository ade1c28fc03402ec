package localcluster

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// portAllocator hands out free TCP ports on a host. The kernel picks a port
// that is free now; remembering what this process already handed out keeps two
// clusters started side by side from getting the same one before either binds
// it. Another program can still take a port in between: Start retries with new
// ports when a component reports that its address is in use.
type portAllocator struct {
	mu     sync.Mutex
	issued map[int]bool
}

var ports = &portAllocator{issued: map[int]bool{}}

func (a *portAllocator) get(host string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("finding a free port on %s: %w", host, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !a.issued[port] {
			a.issued[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port on %s: every port offered was already issued", host)
}

// getN returns n distinct free ports.
func (a *portAllocator) getN(host string, n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := a.get(host)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
