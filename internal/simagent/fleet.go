package simagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fornax-edge/fornax/internal/join"
)

// Fleet runs many simulated clusters in one process. Each keeps
// reconnecting, with a jittered back-off, until the Fleet's context ends.
type Fleet struct {
	Clusters []*Cluster
	Options  Options

	mu sync.Mutex
	// Guarded by mu: per cluster, whether it is held down, the cancel of its
	// current stream, and a channel closed to wake it when it is let up.
	down     []bool
	sessions []context.CancelFunc
	wake     []chan struct{}

	streamErrors atomic.Int64
}

// JoinFleet admits count clusters named prefix+index (from from) through the
// real Join call and returns the fleet and the join latencies. One worker per
// token joins at a time: a token's uses are consumed by conditional updates,
// which concurrent joins on one token would keep retrying.
func JoinFleet(ctx context.Context, req join.Request, tokens []string, prefix string, from, count int, o Options) (*Fleet, []time.Duration, error) {
	if count < 1 {
		return nil, nil, ErrNoClusters
	}
	if len(tokens) == 0 {
		return nil, nil, errors.New("simagent: no join token")
	}
	f := &Fleet{Clusters: make([]*Cluster, count), Options: o}
	lat := make([]time.Duration, count)
	g, gctx := errgroup.WithContext(ctx)
	for w, token := range tokens {
		g.Go(func() error {
			for i := w; i < count; i += len(tokens) {
				r := req
				r.Token, r.Name = token, fmt.Sprintf("%s%05d", prefix, from+i)
				began := time.Now()
				c, err := join.Join(gctx, r, "uid-"+r.Name)
				if err != nil {
					return fmt.Errorf("joining %s: %w", r.Name, err)
				}
				lat[i], f.Clusters[i] = time.Since(began), New(c)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return f, lat, nil
}

// Run keeps every cluster connected until ctx ends.
func (f *Fleet) Run(ctx context.Context) {
	n := len(f.Clusters)
	f.mu.Lock()
	f.down, f.sessions, f.wake = make([]bool, n), make([]context.CancelFunc, n), make([]chan struct{}, n)
	f.mu.Unlock()
	var wg sync.WaitGroup
	for i, c := range f.Clusters {
		wg.Go(func() { f.runOne(ctx, i, c) })
	}
	wg.Wait()
}

func (f *Fleet) runOne(ctx context.Context, i int, c *Cluster) {
	for ctx.Err() == nil {
		f.mu.Lock()
		if f.down[i] {
			if f.wake[i] == nil {
				f.wake[i] = make(chan struct{})
			}
			wake := f.wake[i]
			f.mu.Unlock()
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		f.sessions[i] = cancel
		f.mu.Unlock()
		err := c.Run(sctx, f.Options)
		dropped := sctx.Err() != nil
		cancel()
		if err != nil && !dropped {
			f.streamErrors.Add(1)
		}
		// A real agent's first retry: jittered, so that a crowd does not
		// arrive in lockstep.
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(time.Second)))):
		case <-ctx.Done():
			return
		}
	}
}

// Down takes the first n clusters down (their streams closed, as when their
// uplinks fail) and keeps them down until Up.
func (f *Fleet) Down(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range min(n, len(f.Clusters)) {
		f.down[i] = true
		if f.sessions[i] != nil {
			f.sessions[i]()
		}
	}
}

// Up lets every cluster held down reconnect.
func (f *Fleet) Up() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.down {
		f.down[i] = false
		if f.wake[i] != nil {
			close(f.wake[i])
			f.wake[i] = nil
		}
	}
}

// Drop closes every stream at once; every cluster reconnects after its
// jittered first retry (a reconnect storm, as after a hub restart).
func (f *Fleet) Drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.sessions {
		if cancel != nil {
			cancel()
		}
	}
}

// Stats are the fleet's counters.
type Stats struct {
	Clusters     int   `json:"clusters"`
	Up           int   `json:"up"`
	Sent         int64 `json:"sent"`
	Received     int64 `json:"received"`
	StreamErrors int64 `json:"streamErrors"`
	// Holding counts the clusters holding the mission asked about, if any.
	Holding int `json:"holding"`
}

// Stats counts the clusters up and the bytes on their wires; with a mission
// (namespace, name, generation), how many hold it.
func (f *Fleet) Stats(namespace, name string, generation int64) Stats {
	st := Stats{Clusters: len(f.Clusters), StreamErrors: f.streamErrors.Load()}
	for _, c := range f.Clusters {
		if c.Up.Load() {
			st.Up++
		}
		st.Sent += c.Bytes.Sent.Load()
		st.Received += c.Bytes.Received.Load()
		if name != "" && c.Holds(namespace, name, generation) {
			st.Holding++
		}
	}
	return st
}

// Handler is the fleet's control API, for a benchmark driving several fleet
// processes:
//
//	GET  /stats[?namespace=&name=&generation=]  Stats as JSON
//	POST /down?n=N                              Down(N)
//	POST /up                                    Up()
//	POST /drop                                  Drop()
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		gen, _ := strconv.ParseInt(q.Get("generation"), 10, 64)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.Stats(q.Get("namespace"), q.Get("name"), gen))
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 {
			http.Error(w, "n must be a count of clusters", http.StatusBadRequest)
			return
		}
		f.Down(n)
	})
	mux.HandleFunc("POST /up", func(http.ResponseWriter, *http.Request) { f.Up() })
	mux.HandleFunc("POST /drop", func(http.ResponseWriter, *http.Request) { f.Drop() })
	return mux
}

// ErrNoClusters is returned for a fleet of none.
var ErrNoClusters = errors.New("simagent: a fleet needs at least one cluster")
