// Command mail-catcher is the demo's mail catcher (package
// demoapp/catcher): `make run` points the provider's IDP_SMTP_URL at it,
// and a person reads the mail it caught in a browser.
//
//	mail-catcher -smtp-addr 127.0.0.1:1025 -http-addr 127.0.0.1:8025
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/idp/idp/internal/demoapp/catcher"
)

func main() {
	smtpAddr := flag.String("smtp-addr", "127.0.0.1:1025", "SMTP listen `address` (loopback: it takes mail from anyone who reaches it)")
	httpAddr := flag.String("http-addr", "127.0.0.1:8025", "listen `address` of the page that shows the mail")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *smtpAddr, *httpAddr); err != nil {
		fmt.Fprintf(os.Stderr, "mail-catcher: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, smtpAddr, httpAddr string) error {
	c := &catcher.Catcher{}
	sl, err := net.Listen("tcp", smtpAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	smtpSrv := c.SMTP(smtpAddr)
	httpSrv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- smtpSrv.Serve(sl) }()
	go func() { errc <- httpSrv.Serve(hl) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	smtpSrv.Close()
	httpSrv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
