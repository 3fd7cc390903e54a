package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/server"
)

// database is a fresh database created for one run on a PostgreSQL server.
type database struct {
	serverURL string // the URL given, naming any database on the server
	name      string
	url       string // the fresh database
}

// createDatabase makes an empty database with a random name on the server
// named by serverURL.
func createDatabase(ctx context.Context, serverURL string) (*database, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("bench: database URL must be postgres://…")
	}
	b := make([]byte, 6)
	rand.Read(b)
	d := &database{serverURL: serverURL, name: "idp_bench_" + hex.EncodeToString(b)}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to %s: %w", redactURL(serverURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("bench: create database: %w", err)
	}
	u.Path = "/" + d.name
	d.url = u.String()
	return d, nil
}

// drop removes the database, closing whatever connections are left.
func (d *database) drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.serverURL)
	if err != nil {
		return fmt.Errorf("bench: drop database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
	if err != nil {
		return fmt.Errorf("bench: drop database: %w", err)
	}
	return nil
}

// redactURL drops the password from a database URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// instance is a provider running in this process, as `idp serve` runs it:
// the same server.New, an http.Server with serve's timeouts on a loopback
// port, and the background work (logout delivery, janitor).
type instance struct {
	srv    *server.Server
	pool   *pgxpool.Pool
	dbURL  string
	issuer string
	meter  *meter
	// serverErrors counts error-level log records of the instance.
	serverErrors atomic.Int64
	// background counts the round trips made outside any request.
	background atomic.Int64

	httpSrv *http.Server
	stopBG  context.CancelFunc
	bgDone  chan error
}

// startInstance migrates the database at dbURL and serves a provider on it.
// The instance's pool carries the round-trip tracer; otherwise it is
// configured as db.Open configures it. Its log goes to logw, warnings and
// errors only. janitorInterval is the server's (0: serve's default).
func startInstance(ctx context.Context, dbURL string, janitorInterval time.Duration, logw io.Writer) (*instance, error) {
	cfg, err := db.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	in := &instance{dbURL: dbURL, meter: &meter{}}
	cfg.ConnConfig.Tracer = dbTracer{background: &in.background}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: connect: %w", err)
	}
	in.pool = pool
	findPostmaster(ctx, pool)
	if _, err := db.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("bench: listen: %w", err)
	}
	// localhost, not the address: WebAuthn has no relying party id for an
	// IP address, and the passkey scenario needs one.
	in.issuer = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	secret := make([]byte, 48)
	rand.Read(secret)
	logger := slog.New(&countingHandler{
		Handler: slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}),
		errors:  &in.serverErrors,
	})
	in.srv, err = server.New(ctx, server.Config{
		Issuer: in.issuer, Secret: base64.StdEncoding.EncodeToString(secret), Logger: logger,
		AllowPrivateBackchannel: true, // the apps' receivers listen on loopback
		JanitorInterval:         janitorInterval,
	}, pool)
	if err != nil {
		ln.Close()
		pool.Close()
		return nil, err
	}
	// The timeouts of cmd/idp's serve.
	in.httpSrv = &http.Server{
		Handler:           in.meter.wrap(in.srv.Handler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go in.httpSrv.Serve(ln) //nolint:errcheck // ErrServerClosed at close
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	in.stopBG = cancel
	in.bgDone = make(chan error, 1)
	go func() { in.bgDone <- in.srv.Run(bgCtx) }()
	return in, nil
}

// close stops serving, then the background work, then the pool.
func (in *instance) close() error {
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := in.httpSrv.Shutdown(shutCtx)
	in.stopBG()
	err = errors.Join(err, <-in.bgDone)
	in.pool.Close()
	return err
}

// countingHandler counts error-level records on their way to Handler.
type countingHandler struct {
	slog.Handler
	errors *atomic.Int64
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), errors: h.errors}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), errors: h.errors}
}
