// Package dbtest gives each test a fresh, migrated PostgreSQL database,
// cloned in milliseconds from a template migrated once per test binary.
//
// It uses IDP_TEST_DATABASE_URL (a superuser URL to any database on the
// server). The README's test command starts a private cluster and sets it
// when it is unset.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/migrations"
)

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// URL returns the server URL tests use, or skips the test when unset in
// short mode and fails it otherwise.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("IDP_TEST_DATABASE_URL")
	if u == "" {
		t.Fatal("IDP_TEST_DATABASE_URL is not set: run the tests with `make test`, which starts a private PostgreSQL")
	}
	return u
}

// withDatabase returns base with its database name replaced.
func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + name
	return u.String()
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func admin(ctx context.Context, base string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, base)
}

// ensureTemplate returns a template database migrated to the embedded
// schema. Its name is a hash of the migrations, so it is made once per schema
// and reused by every test binary and run; an advisory lock keeps parallel
// test binaries from building it twice.
func ensureTemplate(base string) (string, error) {
	templateOnce.Do(func() {
		templateName, templateErr = buildTemplate(context.Background(), base)
	})
	return templateName, templateErr
}

func buildTemplate(ctx context.Context, base string) (string, error) {
	h := sha256.New()
	names, _ := fs.Glob(migrations.FS, "*.sql")
	for _, n := range names {
		b, _ := fs.ReadFile(migrations.FS, n)
		h.Write([]byte(n))
		h.Write(b)
	}
	name := "idp_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	conn, err := admin(ctx, base)
	if err != nil {
		return "", fmt.Errorf("dbtest: connect %s: %w", redact(base), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7262012)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7262012)`)
	var ready bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&ready)
	if err != nil || ready {
		return name, err
	}
	// A half-built template from a killed run is dropped and rebuilt.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("dbtest: create template: %w", err)
	}
	pool, err := db.Open(ctx, withDatabase(base, name))
	if err != nil {
		return "", err
	}
	_, err = db.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" WITH is_template true"); err != nil {
		return "", err
	}
	return name, nil
}

// DB is a fresh database for one test.
type DB struct {
	URL  string
	Pool *pgxpool.Pool
}

// New creates a migrated database for t and drops it when t ends.
func New(t testing.TB) *DB {
	t.Helper()
	base := URL(t)
	tmpl, err := ensureTemplate(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := admin(ctx, base)
	if err != nil {
		t.Fatalf("dbtest: connect: %v", err)
	}
	name := randomName("idp_test_")
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tmpl)); err != nil {
		conn.Close(ctx)
		t.Fatalf("dbtest: create database: %v", err)
	}
	conn.Close(ctx)
	u := withDatabase(base, name)
	pool, err := db.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		conn, err := admin(ctx, base)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return &DB{URL: u, Pool: pool}
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable url)"
	}
	return p.Redacted()
}
