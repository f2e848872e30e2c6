// Command flowkit-worker serves the example Go tasks (package tasks) to
// flowkit's worker-based engine over Redis.
//
//	flowkit-worker --redis redis://localhost:6379/0 --topic cpu [--key-prefix flowkit]
//	    [--concurrency N] [--heartbeat 1s] [--visibility-timeout 30s] [--max-deliveries 3]
//	    [--max-message-bytes 1048576] [--burst] [--grace 30s] [--secret-env NAME]
//
// Times are Go durations (1.5s, 200ms) or, as the Python worker takes them,
// plain numbers of seconds (1.5).
//
// --redis @PATH reads the URL from the file PATH, so that its password does
// not show in the process list, as every flowkit command's URL options do.
//
// The signing secret is read from the environment variable named by
// --secret-env (default FLOWKIT_WORKER_SECRET); unset or empty means no signing.
// SIGTERM or SIGINT stops gracefully; a second one stops at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowkit/flowkit/go_worker/flowkit"
	"github.com/flowkit/flowkit/go_worker/tasks"
)

// redisLog passes the Redis client's own messages (mostly dial failures, which
// the worker reports itself) to the log at debug level.
type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, args ...any) {
	l.logger.Debug("redis client: " + fmt.Sprintf(format, args...))
}

// seconds is a time flag that takes a Go duration ("1.5s", "200ms") or a
// plain number of seconds ("1.5"), which is what the Python worker's CLI
// takes: the same command line serves either worker.
type seconds struct{ value *time.Duration }

func (s seconds) String() string {
	if s.value == nil {
		return ""
	}
	return s.value.String()
}

func (s seconds) Set(text string) error {
	if d, err := time.ParseDuration(text); err == nil {
		*s.value = d
		return nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
		return errors.New("not a duration (1.5s, 200ms) nor a number of seconds (1.5)")
	}
	*s.value = time.Duration(f * float64(time.Second))
	return nil
}

// secondsFlag defines a time flag taking a Go duration or a number of seconds.
func secondsFlag(flags *flag.FlagSet, name string, value time.Duration, usage string) *time.Duration {
	flags.Var(seconds{&value}, name, usage+"; a `time`: 1.5s, 200ms, or 1.5 for seconds")
	return &value
}

// urlValue is text, or for "@PATH" the URL held in the file PATH (surrounding
// blank space removed), as every flowkit command reads its URL options: a
// password on the command line shows in ps to every user of the machine.
// Errors name the file, never its text.
func urlValue(text string) (string, error) {
	path, ok := strings.CutPrefix(text, "@")
	if !ok {
		return text, nil
	}
	if path == "" {
		return "", errors.New("'@' must be followed by the path of a file holding the URL")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return "", fmt.Errorf("cannot read the URL from file %q: %v", path, err)
	}
	value := strings.TrimSpace(string(data))
	switch {
	case value == "":
		return "", fmt.Errorf("the URL file %q is empty", path)
	case strings.ContainsAny(value, "\r\n"):
		return "", fmt.Errorf("the URL file %q holds more than one line", path)
	}
	return value, nil
}

// checkGiven refuses counts below one and times not above zero among the flags
// given on the command line. Options reads a zero as "the default", so without
// this "--concurrency 0" or "--heartbeat 0" served with the default, unsaid,
// where the Python worker refuses them.
func checkGiven(flags *flag.FlagSet, counts map[string]int, times map[string]time.Duration) error {
	var err error
	flags.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if n, ok := counts[f.Name]; ok && n < 1 {
			err = fmt.Errorf("--%s must be at least 1, not %d", f.Name, n)
		} else if d, ok := times[f.Name]; ok && d <= 0 {
			err = fmt.Errorf("--%s must be above zero, not %s", f.Name, d)
		}
	})
	return err
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	flags := flag.NewFlagSet("flowkit-worker", flag.ContinueOnError)
	redisURL := flags.String("redis", "", "Redis URL: redis://[user:password@]host:port/db, rediss:// or unix:// (required);"+
		" @PATH reads it from the file PATH, out of the process list")
	topic := flags.String("topic", "", "topic whose requests to serve (required)")
	namespace := flags.String("key-prefix", flowkit.DefaultNamespace, "prefix of every Redis key (the engines' key_prefix)")
	flags.StringVar(namespace, "namespace", flowkit.DefaultNamespace, "old name of --key-prefix")
	concurrency := flags.Int("concurrency", 0, "requests run at once (default five per CPU, as the Python worker)")
	heartbeat := secondsFlag(flags, "heartbeat", flowkit.DefaultHeartbeat, "time between advertisements")
	visibility := secondsFlag(flags, "visibility-timeout", flowkit.DefaultVisibilityTimeout,
		"idle time after which a request of a dead worker is taken over")
	maxDeliveries := flags.Int("max-deliveries", flowkit.DefaultMaxDeliveries,
		"deliveries after which a taken-over request fails instead of running again")
	maxBytes := flags.Int("max-message-bytes", flowkit.MaxMessageBytes, "largest message body sent or accepted, stated in the advert so engines send no larger request")
	burst := flags.Bool("burst", false, "exit once no request is waiting and none is running")
	grace := secondsFlag(flags, "grace", flowkit.DefaultGrace, "how long a stop waits for running requests")
	secretEnv := flags.String("secret-env", flowkit.SecretEnv, "environment variable holding the signing secret")
	workerID := flags.String("worker-id", "", "worker id (default go-<host>-<pid>-<random>)")
	logLevel := flags.String("log-level", "info", "debug, info, warn or error")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "flowkit-worker: unexpected arguments: %v\n", flags.Args())
		return 2
	}
	if *redisURL == "" || *topic == "" {
		fmt.Fprintln(os.Stderr, "flowkit-worker: --redis and --topic are required")
		flags.Usage()
		return 2
	}
	if err := checkGiven(flags, map[string]int{
		"concurrency": *concurrency, "max-deliveries": *maxDeliveries, "max-message-bytes": *maxBytes,
	}, map[string]time.Duration{"heartbeat": *heartbeat, "visibility-timeout": *visibility}); err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-worker: %v\n", err)
		return 2
	}
	// 0 is "no grace" (as the Python worker's --grace 0 and stop(grace=0));
	// below 0 is refused, as the Python worker refuses it, rather than read as 0.
	if *grace < 0 {
		fmt.Fprintf(os.Stderr, "flowkit-worker: --grace must not be negative, not %s\n", *grace)
		return 2
	}
	url, err := urlValue(*redisURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-worker: --redis: %v\n", err)
		return 2
	}
	*redisURL = url
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-worker: bad --log-level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	redis.SetLogger(redisLog{logger})
	if *grace == 0 {
		*grace = flowkit.NoGrace
	}
	registry := flowkit.NewRegistry()
	tasks.RegisterAll(registry)
	worker, err := flowkit.NewWorker(registry, flowkit.Options{
		RedisURL:          *redisURL,
		Topic:             *topic,
		Namespace:         *namespace,
		Concurrency:       *concurrency,
		Heartbeat:         *heartbeat,
		VisibilityTimeout: *visibility,
		MaxDeliveries:     *maxDeliveries,
		MaxMessageBytes:   *maxBytes,
		Secret:            []byte(os.Getenv(*secretEnv)),
		Burst:             *burst,
		Grace:             *grace,
		WorkerID:          *workerID,
		Logger:            logger,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-worker: %v\n", err)
		return 2
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for sig := range signals {
			logger.Info(fmt.Sprintf("worker %s got %s: stopping", worker.ID(), sig))
			worker.Stop()
		}
	}()
	if err := worker.Run(context.Background()); err != nil {
		logger.Error(err.Error())
		return 1
	}
	return 0
}
