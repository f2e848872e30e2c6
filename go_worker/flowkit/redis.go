package flowkit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// connect makes a client for a redis://, rediss:// (TLS) or unix:// URL,
// with an optional user:password@ and /db number.
func connect(rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("malformed Redis URL %q: %v", MaskURL(rawURL), err)
	}
	opts.DialTimeout = 5 * time.Second
	opts.Protocol = 2
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(opts), nil
}

// MaskURL hides the password of a URL, for logs and errors.
func MaskURL(rawURL string) string {
	parsed, err := url.Parse(rawURL)
	if err != nil || parsed.User == nil {
		if i := strings.LastIndex(rawURL, "@"); i >= 0 {
			if j := strings.Index(rawURL, "://"); j >= 0 && j < i {
				return rawURL[:j+3] + "***" + rawURL[i:]
			}
			return "***" + rawURL[i:]
		}
		return rawURL
	}
	if _, has := parsed.User.Password(); has {
		parsed.User = url.UserPassword(parsed.User.Username(), "***")
	}
	return strings.Replace(parsed.String(), "%2A%2A%2A", "***", 1)
}

// ensureGroup creates the workers group (and the stream) at id 0 unless it exists.
func ensureGroup(ctx context.Context, client *redis.Client, stream string) error {
	err := client.XGroupCreateMkStream(ctx, stream, Group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return err
	}
	return nil
}

// isTransient says whether a command that failed with err may succeed if
// simply tried again later: a connection problem, or a reply that means "not
// now" (the server is loading or a replica, a cluster is reconfiguring).
// Everything else Redis answers (an ACL's NOPERM, EXECABORT, OOM, WRONGTYPE) is
// a refusal: retrying it would fail the same way forever.
func isTransient(err error) bool {
	var replyErr redis.Error
	if !errors.As(err, &replyErr) {
		return true
	}
	text := err.Error()
	for _, prefix := range []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(text, prefix) {
			return true
		}
	}
	return false
}

// backoff yields waits between retries: 0.1 s, doubling, at most 2 s.
type backoff struct{ current time.Duration }

func (b *backoff) next() time.Duration {
	if b.current == 0 {
		b.current = 100 * time.Millisecond
	}
	delay := b.current
	b.current = min(b.current*2, 2*time.Second)
	return delay
}

func (b *backoff) reset() { b.current = 0 }

// outItem is one write of the writer goroutine: a response to add to
// replyTo (when envelope is non-nil) and/or a request entry to acknowledge
// and delete (when ack is non-empty).
type outItem struct {
	replyTo  string
	envelope Envelope
	ack      string
}

// outQueue is an unbounded FIFO feeding the single writer goroutine, so the
// responses of one request keep their order.
type outQueue struct {
	mu     sync.Mutex
	items  []outItem
	ready  chan struct{}
	closed bool
}

func newOutQueue() *outQueue { return &outQueue{ready: make(chan struct{}, 1)} }

// push queues an item; it reports false (and drops it) once the queue is closed.
func (q *outQueue) push(item outItem) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.items = append(q.items, item)
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take waits for items and returns up to limit of them; done is true when the
// queue is closed and empty.
func (q *outQueue) take(limit int) (batch []outItem, done bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			n := min(limit, len(q.items))
			batch = append([]outItem(nil), q.items[:n]...)
			q.items = q.items[n:]
			if len(q.items) > 0 {
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			q.mu.Unlock()
			return batch, false
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, true
		}
		<-q.ready
	}
}
