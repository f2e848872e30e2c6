package flowkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// -- writing --------------------------------------------------------------------

// writeLoop sends every response and acknowledgement, batching all that is
// ready into one MULTI block; it returns once the queue is closed and empty.
func (w *Worker) writeLoop() {
	for {
		batch, done := w.out.take(maxBatch)
		if done {
			return
		}
		w.write(batch)
	}
}

// write adds the batch's responses, then acknowledges and deletes its entries,
// in one MULTI/EXEC block: an entry is never acknowledged before its answer
// is written. Only connection errors are retried (0.1 s doubling to 2 s) until
// the shutdown deadline. When Redis refuses the block (an ACL that denies a
// reply stream, EXECABORT, a full memory), the items are written one by one so
// that only the refused ones are lost: each is logged, and the entry of a
// request whose answer was refused is still acknowledged, so no worker runs it
// again and later answers are not held up behind it.
func (w *Worker) write(batch []outItem) {
	if err := w.transact(batch); err != nil {
		w.logf(slog.LevelWarn, "worker %s: Redis refused a block of %d message(s) (%v); writing them one by one",
			w.id, len(batch), err)
		for _, item := range batch {
			w.writeOne(item)
		}
	}
	var acks []string
	for _, item := range batch {
		if item.ack != "" {
			acks = append(acks, item.ack)
		}
	}
	if len(acks) > 0 {
		w.mu.Lock()
		for _, id := range acks {
			delete(w.inFlight, id)
		}
		w.mu.Unlock()
		w.signal()
	}
}

// writeOne writes a single item; a refused answer is dropped (logged) and its
// entry acknowledged on its own.
func (w *Worker) writeOne(item outItem) {
	err := w.transact([]outItem{item})
	if err == nil {
		return
	}
	what := "a progress report"
	if item.ack != "" {
		what = "entry " + item.ack
	}
	if id := answerOf(item.envelope); id != "" {
		what = "request " + logSafe(id)
	}
	w.logf(slog.LevelWarn, "worker %s: Redis refused the answer to %s on %q, dropped: %v", w.id, what, item.replyTo, err)
	if item.ack != "" && item.envelope != nil {
		if err := w.transact([]outItem{{ack: item.ack}}); err != nil {
			w.logf(slog.LevelError, "worker %s: Redis refused to acknowledge entry %s: %v", w.id, item.ack, err)
		}
	}
}

// transact writes items in one MULTI/EXEC block and returns what Redis
// refused as a whole (nil when the block ran, or was given up after connection
// errors at shutdown). A command that fails inside a block that ran is logged.
func (w *Worker) transact(items []outItem) error {
	var acks []string
	for _, item := range items {
		if item.ack != "" {
			acks = append(acks, item.ack)
		}
	}
	ctx := context.Background()
	var retry backoff
	for {
		cmds, err := w.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			var streams []string
			seen := map[string]bool{}
			for _, item := range items {
				if item.envelope != nil && item.replyTo != "" {
					pipe.XAdd(ctx, &redis.XAddArgs{
						Stream: item.replyTo,
						MaxLen: ReplyMaxLen,
						Approx: true,
						Values: map[string]any(item.envelope),
					})
					if !seen[item.replyTo] {
						seen[item.replyTo] = true
						streams = append(streams, item.replyTo)
					}
				}
			}
			// An answer after the engine deleted its stream makes it again, read by
			// nobody: it must expire as the engine's own does, not stay for ever.
			for _, stream := range streams {
				pipe.PExpire(ctx, stream, ReplyTTL)
			}
			if len(acks) > 0 {
				pipe.XAck(ctx, w.stream, Group, acks...)
				pipe.XDel(ctx, w.stream, acks...)
			}
			return nil
		})
		if err == nil {
			return nil
		}
		if !isTransient(err) {
			if aborted(cmds) {
				return err
			}
			for _, cmd := range cmds {
				if cmdErr := cmd.Err(); cmdErr != nil {
					w.logf(slog.LevelWarn, "worker %s: Redis refused %s: %v", w.id, describe(cmd), cmdErr)
				}
			}
			return nil
		}
		w.giveUpMu.Lock()
		giveUpAt := w.giveUpAt
		w.giveUpMu.Unlock()
		if w.isHurried() || !giveUpAt.IsZero() && w.opts.Clock.Now().After(giveUpAt) {
			w.logf(slog.LevelError, "worker %s gives up sending %d message(s): %v", w.id, len(items), err)
			return nil
		}
		delay := retry.next()
		w.logf(slog.LevelWarn, "worker %s: Redis error while answering (retrying in %.1fs): %v", w.id, delay.Seconds(), err)
		sleep(w.opts.Clock, delay, w.hurry)
	}
}

// aborted says whether a MULTI block was discarded as a whole (EXECABORT: a
// command was refused when queued, so every command carries an error), as
// opposed to a block that ran with some commands failing.
func aborted(cmds []redis.Cmder) bool {
	for _, cmd := range cmds {
		if cmd.Err() == nil {
			return false
		}
	}
	return true
}

// describe names a command of the writer's blocks for a log line.
func describe(cmd redis.Cmder) string {
	args := cmd.Args()
	if len(args) > 1 {
		return fmt.Sprintf("%s %v", cmd.Name(), args[1])
	}
	return cmd.Name()
}

// answerOf is the request id a response envelope answers ("" when unreadable).
func answerOf(envelope Envelope) string {
	if envelope == nil {
		return ""
	}
	body, ok := fieldBytes(map[string]any(envelope), "body")
	if !ok {
		return ""
	}
	var head struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &head) != nil {
		return ""
	}
	return head.ID
}

// -- heartbeat ------------------------------------------------------------------

// beatLoop beats at once, then every heartbeat on the worker's clock (a beat
// that runs long delays the next rather than bunching them), until stop.
//
// A Redis outage fails every beat (refused while the server is away; after a
// restart without persistence, NOGROUP for the in-flight entries until the
// group is made again), at several beats a second: the first failure is a
// warning, the next ones debug, and one more warning says when the heartbeat
// works again, so an outage is two lines, not one a beat.
func (w *Worker) beatLoop(stop <-chan struct{}) {
	var failingSince time.Time
	failed := 0
	for {
		if err := w.beat(); err != nil {
			failed++
			if failed == 1 {
				failingSince = w.opts.Clock.Now()
				w.logf(slog.LevelWarn, "worker %s: Redis error during heartbeat: %v (said once until it works again)", w.id, err)
			} else {
				w.logf(slog.LevelDebug, "worker %s: Redis error during heartbeat: %v", w.id, err)
			}
		} else if failed > 0 {
			w.logf(slog.LevelWarn, "worker %s: heartbeat works again after %d failed beat(s) in %.1f s",
				w.id, failed, w.opts.Clock.Now().Sub(failingSince).Seconds())
			failed = 0
		}
		if !sleep(w.opts.Clock, w.opts.Heartbeat, stop) {
			return
		}
	}
}

// beat advertises the worker, refreshes the claim on its in-flight entries
// and takes over entries whose worker died.
//
// A beat that makes the worker appear (its first, or the first since its
// advert may have lapsed: no beat wrote it for three heartbeats) also adds an
// arrival entry after the advert, in the same round trip: engines holding a
// request for its tasks wake on it and send the request at once instead of at
// their next periodic look. Only then, not every beat, so an idle engine is
// not woken once a heartbeat per worker. Redis refusing the entry (an ACL that
// predates it) costs the engines that promptness, not the advert.
func (w *Worker) beat() error {
	ctx := context.Background()
	ttl := 3 * w.opts.Heartbeat
	began := w.opts.Clock.Now()
	arriving := w.advertisedAt.IsZero() || began.Sub(w.advertisedAt) >= ttl
	envelope, err := w.encode(&Notify{
		Worker:            w.id,
		Topic:             w.opts.Topic,
		Tasks:             w.registry.Names(),
		Language:          "go",
		PID:               int64(os.Getpid()),
		Host:              w.host,
		Heartbeat:         w.opts.Heartbeat.Seconds(),
		VisibilityTimeout: w.opts.VisibilityTimeout.Seconds(),
		MaxMessageBytes:   w.opts.MaxMessageBytes,
		SentAt:            w.now(),
	})
	if err != nil {
		return err
	}
	w.mu.Lock()
	inFlight := make([]string, 0, len(w.inFlight))
	for id := range w.inFlight {
		inFlight = append(inFlight, id)
	}
	w.mu.Unlock()
	pipe := w.client.Pipeline()
	pipe.HSet(ctx, w.hashKey, map[string]any(envelope))
	pipe.PExpire(ctx, w.hashKey, ttl)
	expires := float64(w.opts.Clock.Now().Add(ttl).UnixMilli())
	pipe.ZAdd(ctx, w.zsetKey, redis.Z{Score: expires, Member: w.id})
	// Engines given no topics find this one here (GT: never shorten another worker's).
	pipe.ZAddGT(ctx, w.topicsKey, redis.Z{Score: expires, Member: w.opts.Topic})
	var arrival redis.Cmder
	if arriving {
		arrival = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: w.arrivals,
			MaxLen: ArrivalsMaxLen,
			Approx: true,
			Values: map[string]any{"worker": w.id, "topic": w.opts.Topic},
		})
	}
	if len(inFlight) > 0 {
		pipe.XClaimJustID(ctx, &redis.XClaimArgs{
			Stream: w.stream, Group: Group, Consumer: w.id, MinIdle: 0, Messages: inFlight,
		})
	}
	if cmds, err := pipe.Exec(ctx); err != nil {
		for _, cmd := range cmds {
			if cmd != arrival && cmd.Err() != nil {
				return cmd.Err()
			}
		}
		if arrival == nil || arrival.Err() == nil {
			return err
		}
		level := slog.LevelWarn
		if w.arrivalRefused {
			level = slog.LevelDebug
		}
		w.arrivalRefused = true
		w.logf(level, "worker %s: Redis refused its arrival entry on %q: %v; engines holding requests for its"+
			" tasks find it at their next periodic look instead of at once (let the worker's Redis user XADD to that key)",
			w.id, w.arrivals, arrival.Err())
	}
	w.advertisedAt = began
	if w.isStopping() {
		return nil
	}
	w.mu.Lock()
	free := w.opts.Concurrency - w.busy
	w.mu.Unlock()
	if free > 0 {
		if err := w.takeOver(ctx, free); err != nil {
			return err
		}
	}
	if now := w.opts.Clock.Now(); !now.Before(w.nextSweep) {
		w.nextSweep = now.Add(w.opts.VisibilityTimeout)
		return w.sweepConsumers(ctx)
	}
	return nil
}

// sweepConsumers removes the consumers of dead workers that hold no entry any
// more. A worker killed, or stopped while requests still ran, leaves its
// consumer name in the group; once its entries were taken over it holds
// nothing. A consumer is removed when it holds no entry, has been idle longer
// than the visibility timeout and its worker is not advertised (a live
// worker, even an idle one, is): removing a consumer that is read for at that
// moment would drop the entry it was just given from the pending list, which
// a dead worker cannot be.
func (w *Worker) sweepConsumers(ctx context.Context) error {
	consumers, err := w.client.XInfoConsumers(ctx, w.stream, Group).Result()
	if err != nil {
		return err
	}
	var candidates []string
	for _, c := range consumers {
		if c.Pending == 0 && c.Idle > w.opts.VisibilityTimeout && c.Name != w.id {
			candidates = append(candidates, c.Name)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	pipe := w.client.Pipeline()
	advertised := make([]*redis.IntCmd, len(candidates))
	for i, name := range candidates {
		advertised[i] = pipe.Exists(ctx, WorkerKey(w.opts.Namespace, name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	for i, name := range candidates {
		if advertised[i].Val() != 0 {
			continue
		}
		if err := w.client.XGroupDelConsumer(ctx, w.stream, Group, name).Err(); err != nil {
			return err
		}
		w.logf(slog.LevelInfo, "worker %s removed the consumer of dead worker %s, which held nothing", w.id, logSafe(name))
	}
	return nil
}

// takeOver claims up to count entries idle longer than the visibility timeout
// and runs them again, or fails those delivered more than max_deliveries times.
func (w *Worker) takeOver(ctx context.Context, count int) error {
	claimed, _, err := w.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   w.stream,
		Group:    Group,
		Consumer: w.id,
		MinIdle:  w.opts.VisibilityTimeout,
		Start:    "0-0",
		Count:    int64(count),
	}).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	}
	if len(claimed) == 0 {
		return nil
	}
	pending, err := w.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream:   w.stream,
		Group:    Group,
		Start:    claimed[0].ID,
		End:      claimed[len(claimed)-1].ID,
		Count:    int64(len(claimed) + 1000),
		Consumer: w.id,
	}).Result()
	if err != nil {
		return err
	}
	deliveries := make(map[string]int64, len(pending))
	for _, p := range pending {
		deliveries[p.ID] = p.RetryCount
	}
	w.dispatch(claimed, deliveries)
	return nil
}
