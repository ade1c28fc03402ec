package link

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is jittered exponential backoff between connection attempts.
type Backoff struct {
	Min, Max time.Duration
	// Jitter is the fraction of each delay that is random (0.2: ±20 %), so
	// that children cut off together do not reconnect together.
	Jitter float64
	next   time.Duration
}

// Next returns the delay before the next attempt and doubles it up to Max.
func (b *Backoff) Next() time.Duration {
	if b.next < b.Min {
		b.next = b.Min
	}
	d := b.next
	b.next = min(b.next*2, b.Max)
	if b.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + b.Jitter*(2*rand.Float64()-1)))
	}
	return d
}

// Reset starts again from Min, after a connection that worked.
func (b *Backoff) Reset() { b.next = 0 }

// Loop calls attempt until ctx ends, waiting b.Next() between calls; an
// attempt that reports it was connected resets the backoff first.
// Cancellation is not an error.
func Loop(ctx context.Context, b *Backoff, attempt func(ctx context.Context) (connected bool)) {
	for ctx.Err() == nil {
		if attempt(ctx) {
			b.Reset()
		}
		t := time.NewTimer(b.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Pump reads frames with recv until it fails or ctx ends, delivering them on
// the first channel; the read error arrives on the second. It lets a stream's
// owner wait on frames, timers and cancellation in one select.
func Pump[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	frames := make(chan T)
	errc := make(chan error, 1)
	go func() {
		for {
			f, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	return frames, errc
}
