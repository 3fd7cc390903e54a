package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for the Worker's and a Kind's zero fields.
const (
	DefaultConcurrency  = 16
	DefaultPollInterval = 2 * time.Second
	DefaultLease        = 30 * time.Second
	DefaultBaseBackoff  = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultGiveUpAfter  = time.Hour
)

// A Kind delivers the rows of one kind.
type Kind struct {
	// Send makes one attempt at a claimed row and must itself give up
	// after Timeout (its ctx is not cut short at shutdown, so that a
	// delivery in flight completes and is recorded).
	Send func(ctx context.Context, j Job) Result
	// Timeout is how long one Send may take; the Worker's Lease must exceed
	// it, or a slow attempt would be claimed and made again by another
	// worker.
	Timeout time.Duration
	// GiveUpAfter is how long after a row was queued it is retried before
	// it is abandoned (DefaultGiveUpAfter).
	GiveUpAfter time.Duration
	// Log names the kind's deliveries in the log ("backchannel logout").
	Log string
}

// Result is what one Send came to.
type Result struct {
	Outcome Outcome
	// RetryAfter is the receiver's own wish (a Retry-After header) when
	// Outcome is Retrying; the backoff is never shorter.
	RetryAfter time.Duration
	// Error is stored in last_error for the console: never a secret.
	Error string
	// Attrs are logged with the attempt (a status code, a token's jti).
	Attrs []slog.Attr
}

// Worker delivers due rows of its kinds. Every instance may run one: rows
// are claimed so that each attempt is made by one worker, and a worker that
// dies mid-delivery only delays its rows by the lease.
type Worker struct {
	Pool   *pgxpool.Pool
	Kinds  map[string]Kind
	Now    func() time.Time
	Logger *slog.Logger
	// Concurrency bounds parallel deliveries (DefaultConcurrency).
	Concurrency int
	// PollInterval is how often Run looks for due rows when nothing wakes
	// it (DefaultPollInterval); NOTIFY wakes it sooner.
	PollInterval time.Duration
	// Lease is how long a claimed row stays invisible to other workers
	// (DefaultLease); it must exceed every kind's Timeout.
	Lease time.Duration
	// BaseBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt with full jitter (defaults 1 s and 5 min).
	BaseBackoff, MaxBackoff time.Duration
	// Observe, when set, is told of every attempt once it is over (for
	// metrics). It runs on the delivering goroutine and must not block.
	Observe func(Attempt)
}

// Attempt is one delivery attempt as the Worker reports it to Observe.
type Attempt struct {
	Kind     string
	ClientID string
	// Outcome is "delivered", "retry" (it will be tried again), "failed"
	// (the receiver refused it), "abandoned" (undelivered for GiveUpAfter)
	// or "held" (until released).
	Outcome string
	// Since is the time from the row being queued to the end of this
	// attempt: for a delivered logout, how long the app went on believing
	// the session alive.
	Since time.Duration
}

// config is a Worker with its defaults filled in.
type config struct {
	kinds                []string
	now                  func() time.Time
	log                  *slog.Logger
	concurrency          int
	poll, lease          time.Duration
	baseBackoff, maxBack time.Duration
}

func (w *Worker) config() (config, error) {
	if w.Pool == nil || len(w.Kinds) == 0 {
		return config{}, errors.New("outbox: worker: Pool and Kinds are required")
	}
	c := config{
		now:         w.Now,
		log:         w.Logger,
		concurrency: w.Concurrency,
		poll:        w.PollInterval,
		lease:       w.Lease,
		baseBackoff: w.BaseBackoff,
		maxBack:     w.MaxBackoff,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	setDefault(&c.concurrency, DefaultConcurrency)
	setDefault(&c.poll, DefaultPollInterval)
	setDefault(&c.lease, DefaultLease)
	setDefault(&c.baseBackoff, DefaultBaseBackoff)
	setDefault(&c.maxBack, DefaultMaxBackoff)
	for name, k := range w.Kinds {
		if k.Send == nil || k.Timeout <= 0 {
			return config{}, fmt.Errorf("outbox: worker: kind %q needs Send and Timeout", name)
		}
		if c.lease <= k.Timeout {
			return config{}, fmt.Errorf("outbox: worker: Lease %s must exceed kind %q's Timeout %s", c.lease, name, k.Timeout)
		}
		c.kinds = append(c.kinds, name)
	}
	slices.Sort(c.kinds)
	return c, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// DeliverDue claims up to Concurrency due rows, delivers them in parallel
// and records each outcome. It returns how many rows it attempted.
func (w *Worker) DeliverDue(ctx context.Context) (int, error) {
	cfg, err := w.config()
	if err != nil {
		return 0, err
	}
	jobs, err := claim(ctx, w.Pool, cfg.kinds, cfg.now(), cfg.lease, cfg.concurrency)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { w.deliver(ctx, cfg, j) })
	}
	wg.Wait()
	return len(jobs), nil
}

// Run delivers until ctx is done. It keeps up to Concurrency deliveries in
// flight, claiming more as slots free up, and looks for due rows when NOTIFY
// wakes it and every PollInterval. Once ctx is done it claims nothing more,
// lets the deliveries in flight finish and record their outcome, and
// returns nil. Database errors are logged and retried, not returned: a
// worker outlives a database restart.
func (w *Worker) Run(ctx context.Context) error {
	cfg, err := w.config()
	if err != nil {
		return err
	}
	wake := make(chan struct{}, 1)
	var listener sync.WaitGroup
	listener.Go(func() { w.listen(ctx, cfg, wake) })
	defer listener.Wait()

	var inflight sync.WaitGroup
	defer inflight.Wait()
	// Deliveries outlive ctx so that shutdown does not cut one short; each
	// kind's Timeout bounds them.
	deliverCtx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, cfg.concurrency)
	freed := make(chan struct{}, 1)
	poll := time.NewTimer(cfg.poll)
	defer poll.Stop()

	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		claimedAll := false
		if free > 0 {
			jobs, err := claim(ctx, w.Pool, cfg.kinds, cfg.now(), cfg.lease, free)
			if err != nil && ctx.Err() == nil {
				cfg.log.LogAttrs(ctx, slog.LevelError, "outbox: claim failed", slog.String("error", err.Error()))
			}
			for _, j := range jobs {
				slots <- struct{}{}
				inflight.Go(func() {
					w.deliver(deliverCtx, cfg, j)
					<-slots
					signal(freed)
				})
			}
			// A full batch means more may be due: claim again at once.
			claimedAll = err == nil && len(jobs) == free
		}
		if claimedAll && len(slots) < cap(slots) {
			continue
		}
		// Woken by a freed slot only while every slot is busy; otherwise
		// nothing is due until a NOTIFY or the next poll.
		var slotFreed <-chan struct{}
		if len(slots) == cap(slots) || claimedAll {
			slotFreed = freed
		}
		poll.Reset(cfg.poll)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-slotFreed:
		case <-poll.C:
		}
	}
	return nil
}

// signal does a non-blocking send: one pending wake-up is as good as many.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// listen keeps a dedicated connection (outside the pool, so it never starves
// it) LISTENing on NotifyChannel and turns notifications into wake-ups. When
// the connection breaks it reconnects with backoff; polling covers the gap.
func (w *Worker) listen(ctx context.Context, cfg config, wake chan struct{}) {
	delay := time.Second
	for {
		connected, err := w.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = time.Second
		}
		cfg.log.LogAttrs(ctx, slog.LevelWarn, "outbox: listen failed; polling until reconnected",
			slog.String("error", err.Error()), slog.Duration("reconnect_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, time.Minute)
	}
}

func (w *Worker) listenOnce(ctx context.Context, wake chan struct{}) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, w.Pool.Config().ConnConfig)
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return false, err
	}
	// Rows queued while we were not listening raised no wake-up we saw.
	signal(wake)
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, err
		}
		signal(wake)
	}
}

// deliver makes one attempt at a claimed row and records its outcome.
func (w *Worker) deliver(ctx context.Context, cfg config, j Job) {
	k := w.Kinds[j.Kind]
	giveUp := k.GiveUpAfter
	setDefault(&giveUp, DefaultGiveUpAfter)
	now := cfg.now()
	res := k.Send(ctx, j)
	o := res.Outcome
	since := cfg.now().Sub(j.CreatedAt)

	var next time.Time
	if o == Retrying || o == Held {
		deadline := j.CreatedAt.Add(giveUp)
		if !now.Before(deadline) {
			o = Abandoned
		} else if o == Retrying {
			delay := max(backoff(cfg.baseBackoff, cfg.maxBack, j.Attempts), min(res.RetryAfter, cfg.maxBack))
			// The last attempt is made at the deadline, not skipped past it.
			next = now.Add(delay)
			if next.After(deadline) {
				next = deadline
			}
		}
	}

	// Recorded even when ctx is done: the attempt happened.
	recCtx, cancelRec := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelRec()
	recErr := record(recCtx, w.Pool, j, o, now, next, res.Error)
	if w.Observe != nil {
		w.Observe(Attempt{Kind: j.Kind, ClientID: j.ClientID, Outcome: o.String(), Since: since})
	}

	attrs := []slog.Attr{
		slog.Int64("outbox_id", j.ID),
		slog.String("kind", j.Kind),
		slog.String("client_id", j.ClientID),
		slog.String("outcome", o.String()),
		slog.Int("attempt", j.Attempts),
	}
	attrs = append(attrs, res.Attrs...)
	if res.Error != "" {
		attrs = append(attrs, slog.String("error", res.Error))
	}
	if o == Retrying {
		attrs = append(attrs, slog.Time("next_attempt_at", next))
	}
	level := slog.LevelError // failed and abandoned need a person's attention
	switch o {
	case Delivered, Held:
		level = slog.LevelInfo
	case Retrying:
		level = slog.LevelWarn
	}
	if recErr != nil {
		// The lease will run out and the row be attempted again.
		level = slog.LevelError
		attrs = append(attrs, slog.String("record_error", recErr.Error()))
	}
	msg := k.Log
	if msg == "" {
		msg = "outbox " + j.Kind
	}
	cfg.log.LogAttrs(ctx, level, msg, attrs...)
}

// backoff is the delay before retry number attempts+1: uniformly random up
// to BaseBackoff·2^(attempts−1), capped at MaxBackoff ("full jitter"), so
// the workers of many instances do not retry a recovering receiver in step.
func backoff(base, maxDelay time.Duration, attempts int) time.Duration {
	ceiling := maxDelay
	if shift := attempts - 1; shift < 62 {
		if d := base << max(shift, 0); d > 0 && d < maxDelay {
			ceiling = d
		}
	}
	return rand.N(ceiling + 1)
}
