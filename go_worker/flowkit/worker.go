package flowkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of the worker options.
const (
	DefaultHeartbeat         = time.Second
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultMaxDeliveries     = 3
	DefaultGrace             = 30 * time.Second
	// NoGrace as Options.Grace makes a stop leave running requests at once.
	NoGrace = time.Duration(-1)
	// maxBatch is the most responses and acknowledgements written in one MULTI block.
	maxBatch = 512
	// progressBurst is how many progress responses of a request may go out
	// back to back; past them, one more is allowed per progressInterval (a
	// token bucket, the Python worker's rule: a task that reports a few times
	// has every report sent, a flood is cut down).
	progressBurst = 20
	// progressInterval is the time in which a request earns back one report.
	progressInterval = 50 * time.Millisecond
)

// maxBlock bounds one XREADGROUP block: an idle worker reads again that often.
// A stop does not wait for it (the read is woken, see wakeableReader) unless
// Redis refuses CLIENT UNBLOCK. A variable so that a test can lengthen it.
var maxBlock = 500 * time.Millisecond

// Options configure a Worker. Zero values mean the defaults.
type Options struct {
	// RedisURL is a redis://, rediss:// (TLS) or unix:// URL, with optional
	// user:password@ and /db.
	RedisURL string
	// Topic is the topic whose requests the worker takes (required).
	Topic string
	// Namespace prefixes every key (default "flowkit").
	Namespace string
	// Concurrency is how many requests run at once (default five per CPU, as the
	// Python worker and TaskFlow's, whose futurist pool defaults to that).
	Concurrency int
	// Heartbeat is the time between advertisements and claim refreshes (default 1 s).
	Heartbeat time.Duration
	// VisibilityTimeout is how long a request may sit unrefreshed in another
	// worker's pending list before this worker takes it over (default 30 s;
	// must exceed Heartbeat).
	VisibilityTimeout time.Duration
	// MaxDeliveries is the delivery count above which a taken-over request
	// is failed instead of run again (default 3).
	MaxDeliveries int
	// MaxMessageBytes limits message bodies sent and accepted (default 1 MiB).
	// The advert states it, so engines send no larger request.
	MaxMessageBytes int
	// Secret is the HMAC key. nil: the FLOWKIT_WORKER_SECRET environment
	// variable; empty (non-nil): no signing.
	Secret []byte
	// Burst makes Run return once a read finds nothing and nothing is in flight.
	Burst bool
	// Grace is how long a stop waits for running requests (default 30 s; NoGrace: none).
	Grace time.Duration
	// WorkerID names the worker (default "go-<host>-<pid>-<random>").
	WorkerID string
	// Logger receives the worker's log (default slog.Default()).
	Logger *slog.Logger
	// Clock is what the worker compares request deadlines with, dates its
	// messages and adverts by, and times its heartbeat, grace period, retry
	// pauses and progress rate limit on (default SystemClock). Tests set one
	// they move by hand, to put a request past its deadline or make a
	// heartbeat or a grace period fall due without waiting.
	Clock Clock
}

// Worker serves the tasks of a Registry to worker-based engines on one topic.
// A Worker runs once: make a new one to serve again.
type Worker struct {
	registry  *Registry
	opts      Options
	id        string
	secret    []byte
	client    *redis.Client
	reader    *wakeableReader // the reading goroutine's own connection, woken on stop
	stream    string
	hashKey   string
	zsetKey   string
	topicsKey string // where engines given no topics find ours
	arrivals  string // where engines holding requests hear that we (re)appeared
	replies   string // prefix of the namespace's reply streams, the only ones answered on
	log       *slog.Logger
	host      string
	out       *outQueue
	// slots holds a token per running task: at most Concurrency run at once.
	// More may be accepted (a takeover racing a read both count the same free
	// slots); the surplus waits here, as the Python worker's jobs wait for a
	// thread of its pool.
	slots chan struct{}

	mu       sync.Mutex
	busy     int             // accepted requests whose task has not finished
	inFlight map[string]*job // entry ids read and not yet acknowledged (job nil: not run)
	wake     chan struct{}   // signalled when busy or inFlight shrink

	started   bool
	stopOnce  sync.Once
	stopping  chan struct{} // closed when a stop is asked
	hurry     chan struct{} // closed on a second stop: end the grace period now
	hurryOnce sync.Once
	giveUpAt  time.Time // when the writer stops retrying (set at shutdown)
	giveUpMu  sync.Mutex
	nextSweep time.Time // when the heartbeat next looks for dead workers' consumers (its goroutine only)
	// advertisedAt is when the last beat that wrote the advert began (zero:
	// none yet); arrivalRefused, whether Redis refused an arrival entry. The
	// heartbeat goroutine's only.
	advertisedAt   time.Time
	arrivalRefused bool
}

type job struct {
	entryID   string
	request   *Request
	cancel    context.CancelFunc
	finished  bool
	abandoned bool
}

// NewWorker checks the options and prepares a worker; nothing is sent until Run.
func NewWorker(registry *Registry, opts Options) (*Worker, error) {
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = runtime.NumCPU() * 5
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.VisibilityTimeout == 0 {
		opts.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if opts.MaxDeliveries == 0 {
		opts.MaxDeliveries = DefaultMaxDeliveries
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = MaxMessageBytes
	}
	if opts.Clock == nil {
		opts.Clock = SystemClock
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	} else if opts.Grace < 0 {
		opts.Grace = 0
	}
	switch {
	case registry == nil:
		return nil, errors.New("flowkit: a worker needs a registry")
	case opts.Topic == "":
		return nil, errors.New("flowkit: topic must be a non-empty string")
	case opts.Concurrency < 1:
		return nil, fmt.Errorf("flowkit: concurrency must be at least 1, not %d", opts.Concurrency)
	case opts.Heartbeat < time.Millisecond:
		return nil, fmt.Errorf("flowkit: heartbeat must be at least 1ms, not %s", opts.Heartbeat)
	case opts.VisibilityTimeout <= opts.Heartbeat:
		return nil, fmt.Errorf("flowkit: visibility timeout (%s) must exceed heartbeat (%s),"+
			" or the worker would take over its own running requests", opts.VisibilityTimeout, opts.Heartbeat)
	case opts.MaxDeliveries < 1:
		return nil, fmt.Errorf("flowkit: max deliveries must be at least 1, not %d", opts.MaxDeliveries)
	case opts.MaxMessageBytes < 1:
		return nil, fmt.Errorf("flowkit: max message bytes must be positive, not %d", opts.MaxMessageBytes)
	}
	client, err := connect(opts.RedisURL)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if opts.WorkerID == "" {
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		opts.WorkerID = fmt.Sprintf("go-%s-%d-%s", host, os.Getpid(), hex.EncodeToString(suffix))
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Worker{
		registry:  registry,
		opts:      opts,
		id:        opts.WorkerID,
		secret:    ResolveSecret(opts.Secret),
		client:    client,
		reader:    openReader(client),
		stream:    RequestsKey(opts.Namespace, opts.Topic),
		hashKey:   WorkerKey(opts.Namespace, opts.WorkerID),
		zsetKey:   WorkersKey(opts.Namespace, opts.Topic),
		topicsKey: TopicsKey(opts.Namespace),
		arrivals:  ArrivalsKey(opts.Namespace),
		replies:   RepliesKey(opts.Namespace, ""),
		log:       logger,
		host:      host,
		out:       newOutQueue(),
		inFlight:  map[string]*job{},
		slots:     make(chan struct{}, opts.Concurrency),
		wake:      make(chan struct{}, 1),
		stopping:  make(chan struct{}),
		hurry:     make(chan struct{}),
	}, nil
}

// ID is the worker's id: its consumer name and the suffix of its advertisement key.
func (w *Worker) ID() string { return w.id }

// Stop asks the worker to stop reading, wait up to the grace period for
// running requests and leave. A second call stops at once: the grace period
// ends, the Redis commands under way are abandoned (a frozen Redis does not
// hold the exit) and the advertisement is left to expire.
// It does not wait; Run returns when the worker has stopped.
func (w *Worker) Stop() {
	if !w.beginStop() {
		w.hurryOnce.Do(func() { close(w.hurry) })
	}
	w.signal()
}

// beginStop asks for a stop; it reports whether this call asked first.
func (w *Worker) beginStop() bool {
	first := false
	w.stopOnce.Do(func() {
		close(w.stopping)
		first = true
	})
	return first
}

// isHurried reports whether a second stop asked to leave at once.
func (w *Worker) isHurried() bool {
	select {
	case <-w.hurry:
		return true
	default:
		return false
	}
}

func (w *Worker) isStopping() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

// now is the worker's clock as unix seconds, the protocol's times.
func (w *Worker) now() float64 { return float64(w.opts.Clock.Now().UnixNano()) / 1e9 }

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) logf(level slog.Level, format string, args ...any) {
	w.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

// Run serves requests until Stop, ctx's end or (in burst mode) idleness, then
// stops gracefully and returns nil. It returns an error when Redis cannot be
// reached at start (later outages are waited out) or when called twice.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return fmt.Errorf("flowkit: worker %s has already run", w.id)
	}
	w.started = true
	w.mu.Unlock()
	defer w.client.Close()
	defer w.reader.client.Close()
	ran := make(chan struct{})
	defer close(ran)
	go func() {
		select {
		case <-w.hurry:
			// A second stop means now. Closing the clients ends the Redis commands under
			// way at once (a frozen server would hold each for its read timeout, times
			// go-redis's retries: 18 s and more) and fails those that follow without a
			// try, so every loop below sees an error and leaves.
			_ = w.reader.client.Close()
			_ = w.client.Close()
		case <-ran:
		}
	}()
	go func() {
		select {
		case <-w.stopping:
			// The reader need not wait out its block to see the stop.
			w.reader.wake(w.client, w.logf)
		case <-ran:
		}
	}()
	if err := ensureGroup(ctx, w.client, w.stream); err != nil {
		return fmt.Errorf("flowkit: cannot reach Redis at %s: %w", MaskURL(w.opts.RedisURL), err)
	}
	go func() {
		select {
		case <-ctx.Done():
			w.beginStop()
		case <-w.stopping:
		}
	}()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w.writeLoop()
	}()
	beatStop, beatDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beatDone)
		w.beatLoop(beatStop)
	}()
	if len(w.secret) == 0 {
		w.logf(slog.LevelWarn, "worker %s runs without a signing secret: anyone who can write to this Redis can make"+
			" it run tasks and send their results anywhere; set %s (the same on engines and workers) in production",
			w.id, SecretEnv)
	}
	w.logf(slog.LevelInfo, "worker %s serves topic %q with concurrency %d; tasks: %s",
		w.id, w.opts.Topic, w.opts.Concurrency, strings.Join(w.registry.Names(), ", "))
	w.readLoop()
	w.beginStop()
	w.drain()
	close(beatStop)
	<-beatDone
	w.giveUpMu.Lock()
	w.giveUpAt = w.opts.Clock.Now().Add(max(time.Second, min(w.opts.Grace, 5*time.Second)))
	w.giveUpMu.Unlock()
	w.out.close()
	<-writerDone
	if w.isHurried() {
		w.logf(slog.LevelInfo, "worker %s stopped at once; its advertisement expires within %s",
			w.id, 3*w.opts.Heartbeat)
		return nil
	}
	cleanup, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pipe := w.client.Pipeline()
	pipe.ZRem(cleanup, w.zsetKey, w.id)
	pipe.Del(cleanup, w.hashKey)
	if _, err := pipe.Exec(cleanup); err != nil {
		w.logf(slog.LevelWarn, "worker %s could not remove its advertisement: %v", w.id, err)
	}
	w.leaveGroup(cleanup)
	w.logf(slog.LevelInfo, "worker %s stopped", w.id)
	return nil
}

// leaveGroup removes the worker's consumer from the group once it holds no
// entry. Every worker reads under a name of its own, so each restart would
// leave one more consumer in the group for ever; but XGROUP DELCONSUMER drops
// the consumer's pending entries with it, and those of requests left running
// must stay for another worker to take over (a live worker's sweep removes
// the name afterwards, see sweepConsumers).
func (w *Worker) leaveGroup(ctx context.Context) {
	held, err := w.client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: w.stream, Group: Group, Start: "-", End: "+", Count: 1, Consumer: w.id,
	}).Result()
	if err == nil && len(held) == 0 {
		err = w.client.XGroupDelConsumer(ctx, w.stream, Group, w.id).Err()
	}
	if err != nil {
		w.logf(slog.LevelWarn, "worker %s could not remove its consumer from the group: %v", w.id, err)
	}
}

// drain waits up to the grace period for accepted requests to be answered and
// acknowledged; requests still running then are abandoned, left pending for
// another worker to take over.
func (w *Worker) drain() {
	timer := w.opts.Clock.NewTimer(w.opts.Grace)
	defer timer.Stop()
	for {
		w.mu.Lock()
		idle := w.busy == 0 && len(w.inFlight) == 0
		w.mu.Unlock()
		if idle {
			return
		}
		select {
		case <-w.wake:
			continue
		case <-timer.C():
		case <-w.hurry:
		}
		break
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	left := 0
	for id, j := range w.inFlight {
		if j != nil && !j.finished {
			j.abandoned = true
			j.cancel()
			delete(w.inFlight, id)
			left++
		}
	}
	if left > 0 {
		w.logf(slog.LevelWarn, "worker %s: %d request(s) still running after %s; leaving them for another worker",
			w.id, left, w.opts.Grace)
	}
}

// -- reading ------------------------------------------------------------------

func (w *Worker) readLoop() {
	var retry backoff
	ctx := context.Background()
	block := min(w.opts.Heartbeat, maxBlock)
	for !w.isStopping() {
		free := w.freeSlots()
		if free == 0 {
			continue
		}
		streams, err := w.reader.client.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    Group,
			Consumer: w.id,
			Streams:  []string{w.stream, ">"},
			Count:    int64(free),
			Block:    block,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			w.redisTrouble("reading requests", err, &retry)
			continue
		}
		retry.reset()
		var entries []redis.XMessage
		for _, stream := range streams {
			entries = append(entries, stream.Messages...)
		}
		if len(entries) > 0 {
			w.dispatch(entries, nil)
		} else if w.opts.Burst {
			w.mu.Lock()
			idle := w.busy == 0 && len(w.inFlight) == 0
			w.mu.Unlock()
			if idle {
				return
			}
		}
	}
}

// freeSlots waits until the pool has room (or a stop) and returns how much.
func (w *Worker) freeSlots() int {
	for {
		w.mu.Lock()
		free := w.opts.Concurrency - w.busy
		w.mu.Unlock()
		if w.isStopping() {
			return 0
		}
		if free > 0 {
			return free
		}
		select {
		case <-w.wake:
		case <-w.stopping:
		case <-time.After(maxBlock):
		}
	}
}

func (w *Worker) redisTrouble(doing string, err error, retry *backoff) {
	delay := retry.next()
	w.logf(slog.LevelWarn, "worker %s: Redis error while %s (retrying in %.1fs): %v", w.id, doing, delay.Seconds(), err)
	if !sleep(w.opts.Clock, delay, w.stopping) {
		return
	}
	// The stream (and its group) may have been deleted: NOGROUP until re-created.
	if err := ensureGroup(context.Background(), w.client, w.stream); err != nil {
		w.logf(slog.LevelDebug, "worker %s: group not re-created yet: %v", w.id, err)
	}
}

// dispatch checks each entry and queues its answer or starts its job;
// deliveries holds the delivery counts of taken-over entries (nil: fresh reads).
func (w *Worker) dispatch(entries []redis.XMessage, deliveries map[string]int64) {
	now := w.now()
	w.mu.Lock()
	fresh := make([]redis.XMessage, 0, len(entries))
	for _, entry := range entries {
		if _, ours := w.inFlight[entry.ID]; ours { // already ours and running
			continue
		}
		w.inFlight[entry.ID] = nil
		fresh = append(fresh, entry)
	}
	w.mu.Unlock()
	var accepted []*job
	for _, entry := range fresh {
		if request := w.accept(entry, now, deliveries); request != nil {
			accepted = append(accepted, &job{entryID: entry.ID, request: request})
		}
	}
	for _, j := range w.firstSightings(accepted, now) {
		request := j.request
		ctx, cancel := context.WithCancel(context.Background())
		j.cancel = cancel
		w.mu.Lock()
		w.inFlight[j.entryID] = j
		w.busy++
		w.mu.Unlock()
		w.send(request.ReplyTo, &Response{ID: request.ID, Worker: w.id, Event: EventRunning}, "")
		go w.perform(ctx, j)
	}
}

// firstSightings returns the jobs whose request id no other stream entry has
// carried: replays are refused. Each request id is claimed once, with
// SET {ns}:seen:{id} {entry id} NX kept until its deadline has surely passed
// everywhere. A request read again from the same entry (taken over from a
// dead worker) finds its own entry id there and runs; a copy added as a new
// entry (a captured request replayed) finds another and is acknowledged
// unanswered, with a warning. When Redis cannot be asked, the jobs are left
// pending for a later delivery. Only a claim that fails is read back (GET, in
// a second round trip): a fresh request, nearly every one, costs one command.
// (Redis 6.2, which the protocol supports, cannot combine NX with GET in one
// SET.) The Python worker follows the same rule.
func (w *Worker) firstSightings(jobs []*job, now float64) []*job {
	if len(jobs) == 0 {
		return nil
	}
	ctx := context.Background()
	keys := make([]string, len(jobs))
	pipe := w.client.Pipeline()
	sets := make([]*redis.BoolCmd, len(jobs))
	for i, j := range jobs {
		keys[i] = SeenKey(w.opts.Namespace, j.request.ID)
		sets[i] = pipe.SetNX(ctx, keys[i], j.entryID, seenFor(j.request.Deadline-now))
	}
	_, err := pipe.Exec(ctx)
	gets := make(map[int]*redis.StringCmd)
	if err == nil {
		pipe = w.client.Pipeline()
		for i := range jobs {
			if !sets[i].Val() {
				gets[i] = pipe.Get(ctx, keys[i])
			}
		}
		if len(gets) > 0 {
			_, err = pipe.Exec(ctx)
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		w.logf(slog.LevelWarn, "worker %s cannot check %d request(s) against replays, leaving them for a later delivery: %v",
			w.id, len(jobs), err)
		w.mu.Lock()
		for _, j := range jobs {
			delete(w.inFlight, j.entryID)
		}
		w.mu.Unlock()
		w.signal()
		return nil
	}
	fresh := make([]*job, 0, len(jobs))
	for i, j := range jobs {
		get, taken := gets[i]
		if !taken {
			fresh = append(fresh, j)
			continue
		}
		// The claim failed: run only if it expired since, or this very entry holds it.
		holder, err := get.Result()
		if err != nil || holder == j.entryID {
			fresh = append(fresh, j)
			continue
		}
		w.logf(slog.LevelWarn, "worker %s refuses entry %s: request %s (task %s) is a replay, first seen in entry %s",
			w.id, j.entryID, logSafe(j.request.ID), logSafe(j.request.Task), logSafe(holder))
		w.out.push(outItem{ack: j.entryID})
	}
	return fresh
}

// seenFor is how long to remember a request id whose deadline is left
// seconds away: until it has surely passed everywhere (plus MaxClockSkew),
// at least 1 ms and at most MaxSeen, computed in seconds so that a far
// deadline (transition_timeout=1e10 for "for ever"; time.Duration holds at
// most 292 years) does not overflow into a negative duration (which made the
// id forgotten at once, and a replay run again).
func seenFor(left float64) time.Duration {
	keep := left + MaxClockSkew.Seconds()
	switch {
	case keep >= MaxSeen.Seconds():
		return MaxSeen
	case keep <= time.Millisecond.Seconds():
		return time.Millisecond
	}
	return time.Duration(keep * float64(time.Second))
}

// accept returns the request of a runnable entry; otherwise it queues the
// entry's answer (if any) and acknowledgement and returns nil.
func (w *Worker) accept(entry redis.XMessage, now float64, deliveries map[string]int64) *Request {
	if len(entry.Values) == 0 {
		w.out.push(outItem{ack: entry.ID})
		return nil
	}
	message, err := Decode(entry.Values, w.secret, w.opts.MaxMessageBytes)
	if err != nil {
		var perr *ProtocolError
		errors.As(err, &perr)
		w.logf(slog.LevelWarn, "worker %s rejects request entry %s: %s", w.id, entry.ID, logSafe(err.Error()))
		if perr != nil && perr.MessageID != "" && perr.ReplyTo != "" && w.repliesHere(perr.ReplyTo) {
			w.sendFailure(perr.ReplyTo, perr.MessageID, NewFailure(perr.Reason, IncompatibleVersionTypes), entry.ID)
		} else {
			w.out.push(outItem{ack: entry.ID})
		}
		return nil
	}
	if message.Type != TypeRequest {
		w.logf(slog.LevelWarn, "worker %s rejects entry %s: it is a %s message, not a request", w.id, entry.ID, logSafe(message.Type))
		w.out.push(outItem{ack: entry.ID})
		return nil
	}
	request := message.Request
	// The request's id and task name as logs and failures show them (the sender chose them).
	shownID, shownTask := logSafe(request.ID), logSafe(request.Task)
	if !w.repliesHere(request.ReplyTo) {
		// Answering would write, with this worker's Redis rights, into any stream the
		// sender names (another application's queue, another topic's requests).
		w.logf(slog.LevelWarn, "worker %s rejects request %s (entry %s, task %s): its reply_to %q is not a reply"+
			" stream of namespace %q (%s<engine id>)", w.id, shownID, entry.ID, shownTask, request.ReplyTo,
			w.opts.Namespace, w.replies)
		w.out.push(outItem{ack: entry.ID})
		return nil
	}
	if late := now - request.Deadline; late > 0 {
		w.logf(slog.LevelWarn, "worker %s drops request %s (entry %s, task %s): its deadline passed %.3fs ago",
			w.id, shownID, entry.ID, shownTask, late)
		w.out.push(outItem{ack: entry.ID})
		return nil
	}
	count := int64(1)
	if deliveries != nil {
		if n, ok := deliveries[entry.ID]; ok {
			count = n
		}
	}
	if count > int64(w.opts.MaxDeliveries) {
		// A poison request: name the atom and task at fault, not just an id.
		text := fmt.Sprintf("the %s request %s of atom '%s' (task %s) was delivered %d times and its workers died; "+
			"worker %s on topic %s gave up on it", request.Action, shownID, logSafe(request.Name), shownTask, count, w.id, w.opts.Topic)
		w.logf(slog.LevelWarn, "worker %s fails entry %s: %s", w.id, entry.ID, text)
		w.sendFailure(request.ReplyTo, request.ID, NewFailure(text, RequestTimeoutTypes), entry.ID)
		return nil
	}
	if !w.registry.Has(request.Task) {
		text := fmt.Sprintf("worker %s on topic %s has no task named %s", w.id, w.opts.Topic, shownTask)
		w.logf(slog.LevelWarn, "%s (request %s, entry %s)", text, shownID, entry.ID)
		w.sendFailure(request.ReplyTo, request.ID, NewFailure(text, NotFoundTypes), entry.ID)
		return nil
	}
	if deliveries != nil {
		w.logf(slog.LevelInfo, "worker %s takes over request %s (entry %s, delivery %d)", w.id, shownID, entry.ID, count)
	}
	return request
}

// repliesHere says whether replyTo is an engine's reply stream in this worker's namespace.
func (w *Worker) repliesHere(replyTo string) bool {
	return len(replyTo) > len(w.replies) && strings.HasPrefix(replyTo, w.replies)
}

// -- running --------------------------------------------------------------------

func (w *Worker) perform(ctx context.Context, j *job) {
	request := j.request
	var envelope Envelope
	// running is the task's throttle while its function runs. Still set
	// below, it means the function ended its goroutine (runtime.Goexit, which
	// t.FailNow calls) instead of returning: that is answered with a failure
	// of its own type (GoExitTypes), as the Python worker answers a task that
	// raises SystemExit, rather than left unanswered to be run again on every
	// delivery.
	var running *throttle
	defer func() {
		if value := recover(); value != nil { // a bug of ours: leave the request pending
			w.logf(slog.LevelError, "worker %s failed to handle entry %s: %v", w.id, j.entryID, value)
			envelope = nil
		} else if running != nil {
			running.flush()
			text := fmt.Sprintf("the %s of task %s (atom %s) ended its goroutine (runtime.Goexit) instead of returning",
				request.Action, logSafe(request.Task), logSafe(request.Name))
			w.logf(slog.LevelWarn, "worker %s: %s (request %s)", w.id, text, logSafe(request.ID))
			failure := NewFailure(text, GoExitTypes)
			failure.TracebackStr = w.registry.origin(request).frame("ended its goroutine (runtime.Goexit) instead of returning")
			envelope = w.failureEnvelope(request.ID, failure)
		}
		w.finish(j, envelope)
	}()
	if !w.acquireSlot(ctx, j) {
		return // abandoned at a stop before it could start: left pending
	}
	defer func() { <-w.slots }()
	progress := newThrottle(w.opts.Clock.Now, func(value float64, details map[string]any) {
		w.send(request.ReplyTo, &Response{ID: request.ID, Worker: w.id, Event: EventProgress, Progress: value, Details: details}, "")
	})
	notify := func(eventType string, details map[string]any) {
		if eventType == "" {
			w.logf(slog.LevelWarn, "worker %s: task %s notified an event without a type; dropped", w.id, logSafe(request.Task))
			return
		}
		sent := progress.whileRunning(func() {
			w.send(request.ReplyTo, &Response{ID: request.ID, Worker: w.id, Event: EventNotification, EventType: eventType, Details: details}, "")
		})
		if !sent {
			w.logf(slog.LevelWarn, "worker %s: task %s notified event %q of request %s after it returned; dropped",
				w.id, logSafe(request.Task), eventType, logSafe(request.ID))
		}
	}
	call := &Call{
		Context:     ctx,
		Name:        request.Name,
		Task:        request.Task,
		RequestID:   request.ID,
		Arguments:   request.Arguments,
		Progress:    progress.report,
		Notify:      notify,
		TraceParent: ValidTraceParent(request.TraceParent),
		action:      request.Action,
	}
	running = progress
	result, failure := w.registry.Run(call, request)
	running = nil
	progress.flush()
	if failure == nil {
		var err error
		envelope, err = w.encode(&Response{ID: request.ID, Worker: w.id, Event: EventSuccess, Result: result, SentAt: w.now()})
		if err != nil {
			text := fmt.Sprintf("task %s (atom %s) returned a result it cannot send: %v", logSafe(request.Task), logSafe(request.Name), err)
			failure = NewFailure(text, InvalidFormatTypes)
			failure.TracebackStr = w.registry.origin(request).frame("returned a result it cannot send")
		}
	}
	if failure != nil {
		envelope = w.failureEnvelope(request.ID, failure)
	}
}

// acquireSlot waits until fewer than Concurrency tasks run, so a request
// accepted beyond the limit waits for one to end; it reports false when the
// request was abandoned (ctx cancelled) first.
func (w *Worker) acquireSlot(ctx context.Context, j *job) bool {
	select {
	case w.slots <- struct{}{}:
	default:
		w.logf(slog.LevelDebug, "worker %s: request %s (entry %s) waits for one of the %d running tasks to end",
			w.id, logSafe(j.request.ID), j.entryID, w.opts.Concurrency)
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	if ctx.Err() != nil { // abandoned as a slot came free (both were ready): not run after all
		<-w.slots
		return false
	}
	return true
}

// finish queues a job's final response with its acknowledgement, unless the
// job was abandoned at the end of a stop's grace period.
func (w *Worker) finish(j *job, envelope Envelope) {
	j.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	j.finished = true
	w.busy--
	if !j.abandoned {
		if envelope != nil && w.out.push(outItem{replyTo: j.request.ReplyTo, envelope: envelope, ack: j.entryID}) {
			// Stays in flight until the writer has acknowledged it.
		} else {
			delete(w.inFlight, j.entryID)
		}
	}
	w.signal()
}

// throttle passes a task's progress on: a burst of progressBurst reports at
// once, then one per progressInterval (a token bucket on the worker's clock).
// A report beyond that is kept, replacing the one kept before, and flush sends
// it at the end, after which reports are ignored.
type throttle struct {
	mu       sync.Mutex
	now      func() time.Time // the worker's clock
	send     func(float64, map[string]any)
	tokens   float64   // reports that may go out now (at most progressBurst)
	at       time.Time // when tokens was last brought up to date
	unsent   bool
	value    float64
	details  map[string]any
	finished bool
}

func newThrottle(now func() time.Time, send func(float64, map[string]any)) *throttle {
	return &throttle{now: now, send: send, tokens: progressBurst, at: now()}
}

func (t *throttle) report(progress float64, details map[string]any) {
	if progress != progress { // NaN: 0, as a Python task's update_progress clamps it
		progress = 0
	}
	progress = max(0, min(1, progress))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	now := t.now()
	if elapsed := now.Sub(t.at); elapsed > 0 {
		t.tokens = min(progressBurst, t.tokens+float64(elapsed)/float64(progressInterval))
	}
	t.at = now
	if t.tokens >= 1 {
		t.tokens--
		t.unsent, t.details = false, nil
		t.send(progress, details)
	} else {
		t.unsent, t.value, t.details = true, progress, details
	}
}

// whileRunning calls send unless the task has returned (flush was called),
// under the throttle's lock so events and progress keep the task's order;
// it reports whether it called it.
func (t *throttle) whileRunning(send func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.finished {
		send()
	}
	return !t.finished
}

func (t *throttle) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.finished = true
	if t.unsent {
		t.unsent = false
		t.send(t.value, t.details)
	}
}

// -- encoding -------------------------------------------------------------------

func (w *Worker) encode(message any) (Envelope, error) {
	return Encode(message, w.secret, w.opts.MaxMessageBytes)
}

// send queues a response (and an acknowledgement when ack is non-empty).
func (w *Worker) send(replyTo string, response *Response, ack string) {
	response.SentAt = w.now()
	envelope, err := w.encode(response)
	if err != nil && response.Event == EventProgress && response.Details != nil {
		w.logf(slog.LevelWarn, "worker %s: progress details of request %s cannot be sent (%v); sending none",
			w.id, logSafe(response.ID), err)
		response.Details = nil
		envelope, err = w.encode(response)
	}
	if err != nil && response.Event == EventNotification {
		w.logf(slog.LevelWarn, "worker %s: event %q of request %s cannot be sent (%v); dropped",
			w.id, response.EventType, logSafe(response.ID), err)
		return
	}
	if err != nil {
		w.logf(slog.LevelError, "worker %s cannot encode a %s response to request %s: %v", w.id, response.Event, logSafe(response.ID), err)
		if ack != "" {
			w.out.push(outItem{ack: ack})
		}
		return
	}
	w.out.push(outItem{replyTo: replyTo, envelope: envelope, ack: ack})
}

func (w *Worker) sendFailure(replyTo, requestID string, failure *Failure, ack string) {
	w.out.push(outItem{replyTo: replyTo, envelope: w.failureEnvelope(requestID, failure), ack: ack})
}

// failureEnvelope encodes a failure response; a record too large or not JSON
// is replaced by its gist with the same type names.
func (w *Worker) failureEnvelope(requestID string, failure *Failure) Envelope {
	response := &Response{ID: requestID, Worker: w.id, Event: EventFailure, Failure: failure, SentAt: w.now()}
	envelope, err := w.encode(response)
	if err == nil {
		return envelope
	}
	text := failure.ExceptionStr
	if len(text) > 1000 {
		text = text[:1000]
	}
	// The cut may split a character, and the message itself may hold bytes
	// that are not UTF-8 (which the encoder refuses): keep the gist readable.
	text = strings.ToValidUTF8(text, "\uFFFD")
	names := failure.ExcTypeNames
	if len(names) == 0 || !baseNames[names[len(names)-1]] {
		names = GoErrorTypes
	}
	response.Failure = NewFailure(fmt.Sprintf("%s (full failure record not sendable: %v)", text, err), names)
	envelope, err = w.encode(response)
	if err != nil { // only a tiny size limit gets here
		response.Failure = NewFailure("failure record not sendable", names)
		envelope, _ = w.encode(response)
	}
	return envelope
}
