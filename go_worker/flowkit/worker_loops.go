package flowkit

import (
	"context"
	"errors"
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
// is written. Connection errors are retried (0.1 s doubling to 2 s) until the
// shutdown deadline.
func (w *Worker) write(batch []outItem) {
	var acks []string
	for _, item := range batch {
		if item.ack != "" {
			acks = append(acks, item.ack)
		}
	}
	ctx := context.Background()
	var retry backoff
	for {
		cmds, err := w.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, item := range batch {
				if item.envelope != nil && item.replyTo != "" {
					pipe.XAdd(ctx, &redis.XAddArgs{
						Stream: item.replyTo,
						MaxLen: ReplyMaxLen,
						Approx: true,
						Values: map[string]any(item.envelope),
					})
				}
			}
			if len(acks) > 0 {
				pipe.XAck(ctx, w.stream, Group, acks...)
				pipe.XDel(ctx, w.stream, acks...)
			}
			return nil
		})
		if err == nil || isReplyError(err) {
			for _, cmd := range cmds {
				if cmdErr := cmd.Err(); cmdErr != nil {
					w.logf(slog.LevelWarn, "worker %s: Redis refused a response or acknowledgement: %v", w.id, cmdErr)
				}
			}
			break
		}
		w.giveUpMu.Lock()
		giveUpAt := w.giveUpAt
		w.giveUpMu.Unlock()
		if !giveUpAt.IsZero() && time.Now().After(giveUpAt) {
			w.logf(slog.LevelError, "worker %s gives up sending %d message(s): %v", w.id, len(batch), err)
			break
		}
		delay := retry.next()
		w.logf(slog.LevelWarn, "worker %s: Redis error while answering (retrying in %.1fs): %v", w.id, delay.Seconds(), err)
		time.Sleep(delay)
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

// -- heartbeat ------------------------------------------------------------------

func (w *Worker) beatLoop(stop <-chan struct{}) {
	ticker := time.NewTicker(w.opts.Heartbeat)
	defer ticker.Stop()
	for {
		if err := w.beat(); err != nil {
			w.logf(slog.LevelWarn, "worker %s: Redis error during heartbeat: %v", w.id, err)
		}
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
	}
}

// beat advertises the worker, refreshes the claim on its in-flight entries
// and takes over entries whose worker died.
func (w *Worker) beat() error {
	ctx := context.Background()
	ttl := 3 * w.opts.Heartbeat
	envelope, err := w.encode(&Notify{
		Worker:            w.id,
		Topic:             w.opts.Topic,
		Tasks:             w.registry.Names(),
		Language:          "go",
		PID:               int64(os.Getpid()),
		Host:              w.host,
		Heartbeat:         w.opts.Heartbeat.Seconds(),
		VisibilityTimeout: w.opts.VisibilityTimeout.Seconds(),
		SentAt:            Now(),
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
	pipe.ZAdd(ctx, w.zsetKey, redis.Z{Score: float64(time.Now().Add(ttl).UnixMilli()), Member: w.id})
	if len(inFlight) > 0 {
		pipe.XClaimJustID(ctx, &redis.XClaimArgs{
			Stream: w.stream, Group: Group, Consumer: w.id, MinIdle: 0, Messages: inFlight,
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if w.isStopping() {
		return nil
	}
	w.mu.Lock()
	free := w.opts.Concurrency - w.busy
	w.mu.Unlock()
	if free > 0 {
		return w.takeOver(ctx, free)
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
