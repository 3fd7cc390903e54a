package backchannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/netguard"
	"github.com/idp/idp/internal/sso/keys"
)

// Defaults for the Worker's zero fields.
const (
	DefaultTimeout      = 5 * time.Second
	DefaultConcurrency  = 16
	DefaultPollInterval = 2 * time.Second
	DefaultLease        = 30 * time.Second
	DefaultBaseBackoff  = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultGiveUpAfter  = time.Hour
)

// Worker delivers queued logout notifications. Every instance may run one:
// rows are claimed so that each attempt is made by one worker, and a worker
// that dies mid-delivery only delays its rows by the lease. Delivery is at
// least once: a relying party may, rarely, receive a notification twice.
type Worker struct {
	Pool   *pgxpool.Pool
	Keys   *keys.Set
	Issuer string
	// HTTP sends the notifications. It is copied, never mutated; the copy
	// never follows redirects (spec §2.5) and times out after DefaultTimeout
	// when HTTP.Timeout is zero.
	HTTP   *http.Client
	Now    func() time.Time
	Logger *slog.Logger
	// AllowPrivate lets deliveries reach this host, private networks and
	// link-local addresses (IDP_ALLOW_PRIVATE_BACKCHANNEL). Otherwise
	// every address dialled is checked once DNS has resolved it
	// (netguard.Control) and a refused one fails the notification;
	// deliveries then connect directly, not through HTTP(S)_PROXY.
	AllowPrivate bool
	// Concurrency bounds parallel deliveries (DefaultConcurrency).
	Concurrency int
	// PollInterval is how often Run looks for due rows when nothing wakes
	// it (DefaultPollInterval); NOTIFY wakes it sooner.
	PollInterval time.Duration
	// Lease is how long a claimed row stays invisible to other workers
	// (DefaultLease). It must exceed the HTTP timeout, or a slow delivery
	// would be claimed and sent again by another worker.
	Lease time.Duration
	// BaseBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt with full jitter (defaults 1 s and 5 min).
	BaseBackoff, MaxBackoff time.Duration
	// GiveUpAfter is how long after the row was queued a notification is
	// retried before it is abandoned (DefaultGiveUpAfter).
	GiveUpAfter time.Duration
	// Observe, when set, is told of every attempt once it is over (for
	// metrics). It runs on the delivering goroutine and must not block.
	Observe func(Attempt)
}

// Attempt is one delivery attempt as the Worker reports it to Observe.
type Attempt struct {
	ClientID string
	// Outcome is "delivered", "retry" (it will be tried again), "failed"
	// (the app refused it) or "abandoned" (unreachable for GiveUpAfter).
	Outcome string
	// Since is the time from the notification being queued, at the
	// session's end, to the end of this attempt: for a delivered one, how
	// long the app went on believing the session alive.
	Since time.Duration
}

// config is a Worker with its defaults filled in.
type config struct {
	http                 *http.Client
	now                  func() time.Time
	log                  *slog.Logger
	concurrency          int
	poll, lease          time.Duration
	baseBackoff, maxBack time.Duration
	giveUp               time.Duration
}

func (w *Worker) config() (config, error) {
	if w.Pool == nil || w.Keys == nil || w.Issuer == "" {
		return config{}, errors.New("backchannel: worker: Pool, Keys and Issuer are required")
	}
	c := config{
		http:        &http.Client{},
		now:         w.Now,
		log:         w.Logger,
		concurrency: w.Concurrency,
		poll:        w.PollInterval,
		lease:       w.Lease,
		baseBackoff: w.BaseBackoff,
		maxBack:     w.MaxBackoff,
		giveUp:      w.GiveUpAfter,
	}
	if w.HTTP != nil {
		cp := *w.HTTP
		c.http = &cp
	}
	if c.http.Timeout <= 0 {
		c.http.Timeout = DefaultTimeout
	}
	// A redirect would carry the logout token to a URI nobody registered.
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	setDefault(&c.concurrency, DefaultConcurrency)
	if w.HTTP == nil {
		// Deliveries run in parallel, often to one app: keep an idle
		// connection per delivery slot, not DefaultTransport's two per host,
		// or most notifications pay for a new connection (and TLS handshake).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.concurrency
		c.http.Transport = t
	}
	if !w.AllowPrivate {
		t, ok := c.http.Transport.(*http.Transport)
		if c.http.Transport == nil {
			t, ok = http.DefaultTransport.(*http.Transport), true
		}
		if !ok {
			return config{}, errors.New("backchannel: worker: the dial policy needs an *http.Transport (or AllowPrivate)")
		}
		t = t.Clone()
		// A proxy would dial for us, past the check.
		t.Proxy = nil
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: netguard.Control}).DialContext
		c.http.Transport = t
	}
	setDefault(&c.poll, DefaultPollInterval)
	setDefault(&c.lease, DefaultLease)
	setDefault(&c.baseBackoff, DefaultBaseBackoff)
	setDefault(&c.maxBack, DefaultMaxBackoff)
	setDefault(&c.giveUp, DefaultGiveUpAfter)
	if c.lease <= c.http.Timeout {
		return config{}, fmt.Errorf("backchannel: worker: Lease %s must exceed the HTTP timeout %s", c.lease, c.http.Timeout)
	}
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
	jobs, err := claim(ctx, w.Pool, cfg.now(), cfg.lease, cfg.concurrency)
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

// Run delivers notifications until ctx is done. It keeps up to Concurrency
// deliveries in flight, claiming more as slots free up, and looks for due
// rows when NOTIFY wakes it and every PollInterval. Once ctx is done it
// claims nothing more, lets the deliveries in flight finish and record their
// outcome, and returns nil. Database errors are logged and retried, not
// returned: a worker outlives a database restart.
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
	// Deliveries outlive ctx so that shutdown does not cut a POST short;
	// the HTTP timeout bounds them.
	deliverCtx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, cfg.concurrency)
	freed := make(chan struct{}, 1)
	poll := time.NewTimer(cfg.poll)
	defer poll.Stop()

	for ctx.Err() == nil {
		free := cap(slots) - len(slots)
		claimedAll := false
		if free > 0 {
			jobs, err := claim(ctx, w.Pool, cfg.now(), cfg.lease, free)
			if err != nil && ctx.Err() == nil {
				cfg.log.LogAttrs(ctx, slog.LevelError, "backchannel: claim failed", slog.String("error", err.Error()))
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
		cfg.log.LogAttrs(ctx, slog.LevelWarn, "backchannel: listen failed; polling until reconnected",
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
func (w *Worker) deliver(ctx context.Context, cfg config, j job) {
	now := cfg.now()
	o, status, retryAfter, lastErr, jti := w.attempt(ctx, cfg, j, now)
	since := cfg.now().Sub(j.CreatedAt)

	var next time.Time
	if o == retrying {
		deadline := j.CreatedAt.Add(cfg.giveUp)
		if !now.Before(deadline) {
			o = abandoned
		} else {
			delay := max(backoff(cfg.baseBackoff, cfg.maxBack, j.Attempts), min(retryAfter, cfg.maxBack))
			// The last attempt is made at the deadline, not skipped past it.
			next = now.Add(delay)
			if next.After(deadline) {
				next = deadline
			}
		}
	}

	// Recorded even when ctx is done: the attempt happened.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	recErr := record(recCtx, w.Pool, j, o, now, next, lastErr)
	if w.Observe != nil {
		w.Observe(Attempt{ClientID: j.ClientID, Outcome: o.String(), Since: since})
	}

	attrs := []slog.Attr{
		slog.Int64("outbox_id", j.ID),
		slog.String("client_id", j.ClientID),
		slog.String("outcome", o.String()),
		slog.Int("attempt", j.Attempts),
	}
	if jti != "" {
		attrs = append(attrs, slog.String("jti", jti))
	}
	if status != 0 {
		attrs = append(attrs, slog.Int("status", status))
	}
	if lastErr != "" {
		attrs = append(attrs, slog.String("error", lastErr))
	}
	if o == retrying {
		attrs = append(attrs, slog.Time("next_attempt_at", next))
	}
	level := slog.LevelError // failed and abandoned need a person's attention
	switch o {
	case delivered:
		level = slog.LevelInfo
	case retrying:
		level = slog.LevelWarn
	}
	if recErr != nil {
		// The lease will run out and the row be attempted again.
		level = slog.LevelError
		attrs = append(attrs, slog.String("record_error", recErr.Error()))
	}
	cfg.log.LogAttrs(ctx, level, "backchannel logout", attrs...)
}

// maxBody is how much of a response is read: enough for an error message
// and a token the relying party might echo, which must be redacted whole.
const maxBody = 8 << 10

// attempt signs a fresh token and POSTs it. lastErr never holds the token.
func (w *Worker) attempt(ctx context.Context, cfg config, j job, now time.Time) (o outcome, status int, retryAfter time.Duration, lastErr, jti string) {
	u, err := url.Parse(j.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return failed, 0, 0, "invalid backchannel_logout_uri", ""
	}
	token, jti, err := SignLogoutToken(w.Keys, j.Alg, w.Issuer, j.ClientID, j.Subject, j.SID, j.IncludeSID, now)
	if errors.Is(err, ErrInvalidToken) || errors.Is(err, keys.ErrUnsupportedAlg) {
		// The row or the client's registration is wrong: retrying cannot
		// help until someone fixes it and calls Retry.
		return failed, 0, 0, err.Error(), ""
	}
	if err != nil {
		// Our side, say a rotated key this instance has not reloaded yet:
		// worth retrying.
		return retrying, 0, 0, err.Error(), ""
	}
	body := url.Values{"logout_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return failed, 0, 0, redact(err.Error(), token), jti
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := cfg.http.Do(req)
	if errors.Is(err, netguard.ErrInternal) {
		// The operator's policy, not a passing fault: retrying cannot help.
		return failed, 0, 0, "refused: the back-channel logout URI's host is on this host, a private network or a link-local address" +
			" (IDP_ALLOW_PRIVATE_BACKCHANNEL is not set)", jti
	}
	if err != nil {
		return retrying, 0, 0, redact(err.Error(), token), jti
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	// Drain a little more so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) //nolint:errcheck

	status = resp.StatusCode
	switch {
	case status == http.StatusOK || status == http.StatusNoContent:
		return delivered, status, 0, "", jti
	case status == http.StatusTooManyRequests || status >= 500:
		o = retrying
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	default:
		o = failed
	}
	lastErr = "HTTP " + strconv.Itoa(status)
	if msg := excerpt(answer, resp.Header.Get("Content-Type"), token); msg != "" {
		lastErr += ": " + msg
	}
	return o, status, retryAfter, lastErr, jti
}

// backoff is the delay before retry number attempts+1: uniformly random up
// to BaseBackoff·2^(attempts−1), capped at MaxBackoff ("full jitter"), so
// the workers of many instances do not retry a recovering relying party in
// step.
func backoff(base, maxDelay time.Duration, attempts int) time.Duration {
	ceiling := maxDelay
	if shift := attempts - 1; shift < 62 {
		if d := base << max(shift, 0); d > 0 && d < maxDelay {
			ceiling = d
		}
	}
	return rand.N(ceiling + 1)
}

// parseRetryAfter reads delta-seconds or an HTTP date; zero if absent.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// jwtLike matches anything that looks like a JWT or a piece of one: a
// relying party may echo (part of) the token in its error page.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]*){0,2}`)

// maxLastError is how many bytes of a message last_error keeps.
const maxLastError = 200

// redact removes the token and anything token-like from s, makes it valid
// UTF-8 text PostgreSQL will store, and cuts it to maxLastError bytes.
func redact(s, token string) string {
	if token != "" {
		s = strings.ReplaceAll(s, token, "[logout_token]")
	}
	s = jwtLike.ReplaceAllString(s, "[jwt]")
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	s = strings.TrimSpace(s)
	if len(s) > maxLastError {
		cut := maxLastError
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
