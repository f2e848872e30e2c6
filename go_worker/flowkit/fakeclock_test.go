package flowkit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/flowkit/flowkit/go_worker/flowkit"
)

// fakeClock is a flowkit.Clock the test moves by hand. Its time stands still
// until advance, which fires the timers that fall due; settle waits until the
// worker has armed the timers it waits on next, so a test knows a heartbeat
// has run (or a grace period is still running) without sleeping.
type fakeClock struct {
	mu      sync.Mutex
	changed *sync.Cond
	now     time.Time
	timers  map[*fakeTimer]struct{} // armed: neither fired nor stopped
}

func newFakeClock(now time.Time) *fakeClock {
	c := &fakeClock{now: now, timers: map[*fakeTimer]struct{}{}}
	c.changed = sync.NewCond(&c.mu)
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) flowkit.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, due: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers[t] = struct{}{}
	c.changed.Broadcast()
	return t
}

// advance moves the clock d on and fires the timers that fall due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.due.After(c.now) {
			delete(c.timers, t)
			t.ch <- c.now
		}
	}
	c.changed.Broadcast()
}

// settle waits (at most 10 s of real time, then fails the test) until n
// timers are armed: the worker has done what the last advance made due and
// waits on the clock again.
func (c *fakeClock) settle(t *testing.T, n int) {
	t.Helper()
	expired := false
	stop := time.AfterFunc(10*time.Second, func() {
		c.mu.Lock()
		expired = true
		c.changed.Broadcast()
		c.mu.Unlock()
	})
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.timers) < n && !expired {
		c.changed.Wait()
	}
	if len(c.timers) < n {
		t.Fatalf("%d timer(s) armed on the fake clock, expected %d", len(c.timers), n)
	}
}

type fakeTimer struct {
	clock *fakeClock
	due   time.Time
	ch    chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	_, armed := t.clock.timers[t]
	delete(t.clock.timers, t)
	t.clock.changed.Broadcast()
	return armed
}
