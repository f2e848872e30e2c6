package flowkit

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// wakeTimeout bounds the CLIENT UNBLOCK a stop sends (a frozen Redis must not hold it).
const wakeTimeout = 2 * time.Second

// wakeableReader is the connection the worker's reading goroutine blocks on in
// XREADGROUP, kept apart from the client's pool so that a stop can end that
// block at once. It learns the connection's CLIENT ID each time it (re)connects;
// wake sends CLIENT UNBLOCK for it on another connection, which ends the read
// as if its block had run out. Without it a stop waited out the block (up to
// maxBlock, and Redis ends a block only on its own timer tick: 0.5-0.6 s), as
// the Python worker's stop did before it did the same (flowkit's _wakeable).
//
// A Redis user whose ACL forbids CLIENT UNBLOCK (an @admin command) keeps the
// old wait, said once at INFO.
type wakeableReader struct {
	client  *redis.Client
	id      atomic.Int64 // the read connection's CLIENT ID; 0: not known
	refused atomic.Bool  // Redis refused CLIENT UNBLOCK once: not asked again
}

// openReader makes the reading client: the options of pool, one connection.
// Nothing is sent until the first read.
func openReader(pool *redis.Client) *wakeableReader {
	r := &wakeableReader{}
	opts := *pool.Options()
	opts.PoolSize = 1
	opts.MinIdleConns = 0
	opts.MaxIdleConns = 1
	opts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			// The connection still reads; only a stop waits out its block.
			r.id.Store(0)
			return nil
		}
		r.id.Store(id)
		return nil
	}
	r.client = redis.NewClient(&opts)
	return r
}

// wake ends the reader's blocking read now, if one is waiting, by CLIENT
// UNBLOCK on pool (never on the read's own connection, which is blocked). A
// read not yet waiting is not affected: it blocks for its time, as before.
func (r *wakeableReader) wake(pool *redis.Client, logf func(slog.Level, string, ...any)) {
	id := r.id.Load()
	if id == 0 || r.refused.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wakeTimeout)
	defer cancel()
	err := pool.ClientUnblock(ctx, id).Err()
	var replyErr redis.Error
	switch {
	case err == nil:
	case errors.As(err, &replyErr):
		r.refused.Store(true)
		logf(slog.LevelInfo, "Redis refuses CLIENT UNBLOCK to the worker (%v): a stop waits for the worker's"+
			" read of requests to end, up to %s", err, maxBlock)
	default:
		logf(slog.LevelDebug, "could not wake the worker's read of requests: %v", err)
	}
}
