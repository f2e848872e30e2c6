package flowkit

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Dispatch hands entries to a running worker as its reader hands it what it
// reads, so a test can give it more requests than it has free slots, as a
// heartbeat's takeover racing a read does, without depending on that race.
func Dispatch(w *Worker, entries []redis.XMessage) { w.dispatch(entries, nil) }

// SetMaxBlock sets how long one XREADGROUP of a worker blocks, until the test ends.
func SetMaxBlock(t interface{ Cleanup(func()) }, block time.Duration) {
	was := maxBlock
	maxBlock = block
	t.Cleanup(func() { maxBlock = was })
}

// SlotsOf is how many requests a worker runs at once (its options' Concurrency, defaults applied).
func SlotsOf(w *Worker) int { return cap(w.slots) }
