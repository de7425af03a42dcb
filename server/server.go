// Package server serves a registry home over HTTP: the OCI distribution API
// (v1.1) under /v2/, the OPM listing API under /namespaces, and web pages for
// people at /.
//
// Routes:
//
//	GET  /v2/                                         API version check
//	GET  /v2/_catalog                                 ?n=&last=
//	GET|HEAD /v2/<ns>/<p>/<r>/manifests/<tag|digest>  manifest, byte for byte
//	PUT  /v2/<ns>/<p>/<r>/manifests/<tag|digest>      one git commit
//	DELETE /v2/<ns>/<p>/<r>/manifests/<tag|digest>    one git commit
//	GET|HEAD /v2/<ns>/<p>/<r>/blobs/<digest>          with Range
//	DELETE /v2/<ns>/<p>/<r>/blobs/<digest>            only if no manifest names it
//	POST /v2/<ns>/<p>/<r>/blobs/uploads/              ?digest= (monolithic), ?mount=&from=
//	GET|PATCH|PUT|DELETE /v2/<ns>/<p>/<r>/blobs/uploads/<id>
//	GET  /v2/<ns>/<p>/<r>/tags/list                   ?n=&last=
//	GET  /v2/<ns>/<p>/<r>/referrers/<digest>          ?artifactType=
//	GET  /namespaces[/<ns>/projects[/<p>/repositories[/<r>/tags[/<t>]]]]
//	GET  /                                            web pages (see web.go)
//
// Where things live. The server reads the registry through its views and
// changes it through its operations (package registry); it never opens the
// metadata repository or a blob store itself. A tagged manifest is the tag's
// file in git, and a manifest pushed by digest alone (an image index's
// children, a signature, an SBOM) is kept beside the tags, also one commit
// and also byte for byte (docs/design.md §3); the mount and `opm ls` show
// tags only. Blobs are not scoped to a repository: any repository's blob
// URL serves any stored blob (access control is per server, not per
// repository). Blob uploads in progress are files in
// <home>/uploads/serve-<random>/, one directory per server, lost when the
// server stops.
package server

import (
	"log/slog"
	"net/http"

	"github.com/openpm/opm/registry"
)

// Options configure a Server.
type Options struct {
	// Token is the bearer token writes need. Empty: every write is refused.
	Token string
	// ReadToken, if set, closes reads too: they need it (or Token).
	ReadToken string
	// Logger receives one line per failed request; nil means slog.Default.
	Logger *slog.Logger
	// Title is shown at the top of the web pages.
	Title string
	// Limits bound what a client can hold (zero fields: DefaultLimits'):
	// the server uses the body limits; give the same to NewHTTPServer
	// and LimitListener.
	Limits Limits
}

// Server is an http.Handler over one open registry.
type Server struct {
	reg  *registry.Registry
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux

	uploads *registry.Uploads
	tokens  issuer // signs the tokens of the token endpoint (auth.go)
}

// New makes a server for reg. Close removes the uploads in progress.
func New(reg *registry.Registry, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Title == "" {
		opts.Title = "opm registry"
	}
	opts.Limits = opts.Limits.OrDefault()
	// Each server has its own directory of uploads (two may serve one home:
	// `opm mount --http` and `opm serve` through the daemon).
	ups, err := reg.Uploads(opts.Logger)
	if err != nil {
		return nil, err
	}
	s := &Server{reg: reg, opts: opts, log: opts.Logger, uploads: ups, tokens: newIssuer()}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v2/", s.serveOCI)
	s.mux.HandleFunc("GET /namespaces", s.serveListing)
	s.mux.HandleFunc("GET /namespaces/", s.serveListing)
	s.mux.HandleFunc("PUT /namespaces/", s.describeHTTP)
	s.routeWeb(s.mux)
	return s, nil
}

// Close drops the uploads in progress.
func (s *Server) Close() error { return s.uploads.Close() }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	r = limitBody(w, r, s.opts.Limits)
	if r.URL.Path == tokenPath {
		s.serveToken(w, r)
		return
	}
	if !s.authorize(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

func isWrite(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}
