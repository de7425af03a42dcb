package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/openpm/opm/registry"
	"github.com/openpm/opm/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the registry over HTTP: the OCI distribution API, the OPM listing API and web pages",
		ArgsUsage: " ",
		Description: `Serves the home until SIGINT or SIGTERM:

   /v2/…          OCI distribution-spec v1.1 (docker, oras, crane, helm pull and push);
                  repository names are namespace/project/repository
   /namespaces…   the OPM listing API (JSON)
   /              web pages: namespaces, projects, repositories, tags, files, history

Reads are open unless --read-token-file is given. Writes need the token of
--token-file: log in with any user name and the token as the password
(skopeo login, docker login, oras login, helm registry login, crane auth
login), or send 'Authorization: Bearer <token>'. Clients get short-lived
tokens at /_opm/token (the token flow of Docker Hub); a login with a wrong
token fails. Without --token-file the server is read-only. Every manifest
pushed is one git commit. Every request ends, answered or closed, within a
bounded time; connections are bounded, in all and per client address
(--max-conns, --max-conns-per-addr). See docs/http.md.

While a daemon ('opm mount') owns the home, the daemon serves.

Example:
   opm serve --addr 127.0.0.1:5000 --token-file ~/.config/opm/token`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:5000", Usage: "listen on `HOST:PORT`"},
			&cli.StringFlag{Name: "token-file", Usage: "`FILE` holding the token writes need"},
			&cli.StringFlag{Name: "read-token-file", Usage: "`FILE` holding a token reads need (closes reads)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate `FILE` (with --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "private key `FILE` of --tls-cert"},
			&cli.StringFlag{Name: "title", Value: "registry", Usage: "`TEXT` at the top of the web pages"},
			&cli.IntFlag{Name: "max-conns", Value: server.DefaultLimits.MaxConns, Usage: "hold at most `N` connections at once (more wait to be accepted)"},
			&cli.IntFlag{Name: "max-conns-per-addr", Value: server.DefaultLimits.MaxConnsPerAddr, Usage: "hold at most `N` connections of one client address (an IPv6 /64); more are closed at once"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0); err != nil {
				return err
			}
			o, err := newServeOptions(c)
			if err != nil {
				return err
			}
			return runServe(globals(c), o)
		},
	}
}

type serveOptions struct {
	Addr, CertFile, KeyFile string
	Token, ReadToken        string
	Title                   string
	Limits                  server.Limits // zero fields: server.DefaultLimits'
}

// newServeOptions reads opm serve's flags, and the tokens in the files
// they name.
func newServeOptions(c *cli.Context) (serveOptions, error) {
	g := globals(c)
	o := serveOptions{Addr: c.String("addr"), CertFile: c.String("tls-cert"), KeyFile: c.String("tls-key"), Title: c.String("title")}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return o, usagef("--tls-cert and --tls-key go together")
	}
	for _, f := range []string{"max-conns", "max-conns-per-addr"} {
		if c.Int(f) < 1 {
			return o, usagef("--%s %d: want a number >= 1", f, c.Int(f))
		}
	}
	o.Limits.MaxConns, o.Limits.MaxConnsPerAddr = c.Int("max-conns"), c.Int("max-conns-per-addr")
	var err error
	if o.Token, err = readToken(g, "token-file", c.String("token-file")); err != nil {
		return o, err
	}
	if o.ReadToken, err = readToken(g, "read-token-file", c.String("read-token-file")); err != nil {
		return o, err
	}
	return o, nil
}

// readToken reads the token in file name, given as --flag; "" when name is.
func readToken(g globalOptions, flag, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	b, err := os.ReadFile(absPath(g, name))
	if err != nil {
		return "", usagef("--%s: %v", flag, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("--%s: %s is empty", flag, name)
	}
	return tok, nil
}

// runServe serves the home over HTTP until SIGINT or SIGTERM.
func runServe(g globalOptions, o serveOptions) error {
	return withHome(g, func(r *registry.Registry) error {
		return serveHTTP(g.ctx, r, o, g.stderr, nil)
	})
}

// serveHTTP serves r on o.Addr until ctx ends. ready, if set, receives the
// address listened on.
func serveHTTP(ctx context.Context, r *registry.Registry, o serveOptions, log io.Writer, ready func(addr string)) error {
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(r, server.Options{Token: o.Token, ReadToken: o.ReadToken, Logger: logger, Title: o.Title, Limits: o.Limits})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	ln = server.LimitListener(ln, o.Limits)
	hs := server.NewHTTPServer(srv, o.Limits, slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	scheme := "http"
	if o.CertFile != "" {
		scheme = "https"
	}
	mode := "writes need the token"
	if o.Token == "" {
		mode = "read-only (no --token-file)"
	}
	fmt.Fprintf(log, "opm: serving %s on %s://%s/ (%s)\n", r.Home(), scheme, ln.Addr(), mode)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() {
		if o.CertFile != "" {
			errc <- hs.ServeTLS(ln, o.CertFile, o.KeyFile)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
