package flowkit

import "time"

// Clock is what a Worker reads the time from and times its periodic work on:
// request deadlines and the dates in its messages and adverts (Now), and the
// heartbeat, a stop's grace period and the writer's retry pauses (NewTimer).
// Progress reports are rate-limited on Now too. Tests pass a clock they move
// by hand, so they can make a heartbeat or a grace period fall due without
// waiting for it. Blocking reads from Redis still block in real time, and an
// entry's idle time (what the visibility timeout is compared with) is kept by
// Redis on its own clock.
type Clock interface {
	// Now is the current wall-clock time.
	Now() time.Time
	// NewTimer returns a timer whose channel receives once d has passed on this clock.
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's one-shot timer, as time.Timer.
type Timer interface {
	// C is the channel the time is sent on when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it stopped it.
	Stop() bool
}

// SystemClock is the real clock: time.Now and time.NewTimer.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }

func (t systemTimer) Stop() bool { return t.t.Stop() }

// sleep waits d on clock, or until stop is closed; it reports whether the time passed.
func sleep(clock Clock, d time.Duration, stop <-chan struct{}) bool {
	timer := clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C():
		return true
	case <-stop:
		return false
	}
}
