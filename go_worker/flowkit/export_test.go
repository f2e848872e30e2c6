package flowkit

import "github.com/redis/go-redis/v9"

// Dispatch hands entries to a running worker as its reader hands it what it
// reads, so a test can give it more requests than it has free slots, as a
// heartbeat's takeover racing a read does, without depending on that race.
func Dispatch(w *Worker, entries []redis.XMessage) { w.dispatch(entries, nil) }
