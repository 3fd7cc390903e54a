package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idp/idp/internal/db"
	"github.com/idp/idp/internal/users"
)

// Floors: the most the machine allows for the unit of work that bounds a
// scenario.
const (
	FloorArgon2 = "argon2id"
	FloorInsert = "insert"
	FloorSelect = "select"
)

// argon2Op hashes benchPassword with users.HashPassword (the configured
// parameters). Run in GOMAXPROCS workers it gives the rate at which any
// number of sign-ins can check passwords.
func argon2Op(ctx context.Context, _ int) error {
	_, err := users.HashPassword(ctx, benchPassword)
	return err
}

// floorServer is a bare net/http server with its own pgx pool, as large as
// the provider's by default (db.DefaultMaxConns) and never smaller than the
// number of workers, so the floor is what the machine allows and not what a
// pool allows, over a copy of oauth_access_tokens:
// /insert stores one token-sized row, /select reads one by primary key.
// That is all a token endpoint or an introspection endpoint must do.
type floorServer struct {
	pool *pgxpool.Pool
	srv  *http.Server
	url  string
	doc  []byte   // the request document of a real client_credentials token
	keys [][]byte // signature hashes of rows for /select
}

const floorTable = "bench_floor_tokens"

func startFloorServer(ctx context.Context, dbURL string, doc []byte, workers int) (*floorServer, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("bench: floor pool: %w", err)
	}
	cfg.MaxConns = int32(max(db.DefaultMaxConns, workers))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: floor pool: %w", err)
	}
	// Same columns, primary key and indexes as the real table.
	if _, err := pool.Exec(ctx, `CREATE TABLE `+floorTable+` (LIKE oauth_access_tokens INCLUDING ALL)`); err != nil {
		pool.Close()
		return nil, fmt.Errorf("bench: floor table: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pool.Close()
		return nil, err
	}
	f := &floorServer{pool: pool, url: "http://" + ln.Addr().String(), doc: doc}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /insert", f.insert)
	mux.HandleFunc("POST /select", f.selectRow)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln) //nolint:errcheck // ErrServerClosed at close
	return f, nil
}

func (f *floorServer) close() {
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.srv.Shutdown(shutCtx) //nolint:errcheck
	f.pool.Close()
}

func newSignatureHash() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	h := sha256.Sum256(b)
	return h[:]
}

const floorInsert = `INSERT INTO ` + floorTable + ` (signature_hash, request_id, client_id, subject, sid, requested_at, expires_at, request)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

func (f *floorServer) insert(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	now := time.Now()
	_, err := f.pool.Exec(r.Context(), floorInsert,
		newSignatureHash(), uuid.NewString(), resourceID, "", nil, now, now.Add(10*time.Minute), f.doc)
	if err != nil {
		http.Error(w, "insert failed", http.StatusInternalServerError)
		return
	}
	// An answer the size of a token response.
	tok := make([]byte, 64)
	rand.Read(tok)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck
		"access_token": base64.RawURLEncoding.EncodeToString(tok), "token_type": "bearer", "expires_in": 599, "scope": ""})
}

func (f *floorServer) selectRow(w http.ResponseWriter, r *http.Request) {
	key, err := hex.DecodeString(r.PostFormValue("key"))
	if err != nil {
		http.Error(w, "bad key", http.StatusBadRequest)
		return
	}
	var (
		active bool
		doc    []byte
	)
	err = f.pool.QueryRow(r.Context(), `SELECT active, request FROM `+floorTable+` WHERE signature_hash = $1`, key).
		Scan(&active, &doc)
	if err != nil {
		http.Error(w, "select failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"active": active, "client_id": resourceID, "token_type": "Bearer"}) //nolint:errcheck
}

// seedSelect inserts n rows for /select to find.
func (f *floorServer) seedSelect(ctx context.Context, n int) error {
	now := time.Now()
	rows := make([][]any, n)
	f.keys = make([][]byte, n)
	for i := range rows {
		f.keys[i] = newSignatureHash()
		rows[i] = []any{f.keys[i], uuid.NewString(), resourceID, "", nil, now, now.Add(time.Hour), f.doc}
	}
	_, err := f.pool.CopyFrom(ctx, pgx.Identifier{floorTable},
		[]string{"signature_hash", "request_id", "client_id", "subject", "sid", "requested_at", "expires_at", "request"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("bench: seed floor rows: %w", err)
	}
	_, err = f.pool.Exec(ctx, `ANALYZE `+floorTable)
	return err
}

func (f *floorServer) insertOp(hc *http.Client) op {
	return func(ctx context.Context, _ int) error {
		var out map[string]any
		return postForm(ctx, hc, f.url+"/insert", "floor", "floor", url.Values{"n": {"1"}}, &out)
	}
}

func (f *floorServer) selectOp(hc *http.Client) op {
	return func(ctx context.Context, _ int) error {
		var out struct {
			Active bool `json:"active"`
		}
		key := f.keys[mathrand.IntN(len(f.keys))]
		if err := postForm(ctx, hc, f.url+"/select", "floor", "floor", url.Values{"key": {hex.EncodeToString(key)}}, &out); err != nil {
			return err
		}
		if !out.Active {
			return fmt.Errorf("floor select: row not active")
		}
		return nil
	}
}
