package server

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// The web pages, for people:
//
//	/                         namespaces (?q= searches every name)
//	/<ns>/                    projects
//	/<ns>/<p>/                repositories
//	/<ns>/<p>/<r>/            tags
//	/<ns>/<p>/<r>/tags/<t>/   files (download links), blobs, history
//	/_opm/style.css           (names never begin with "_": no clash)
//
// Plain HTML from html/template, no JavaScript. `opm site` writes the same
// pages as files (see WriteSite).

//go:embed web
var webFS embed.FS

var pages = map[string]*template.Template{}

func init() {
	funcs := template.FuncMap{
		"short": func(v any) string {
			s := fmt.Sprint(v)
			if h, ok := strings.CutPrefix(s, "sha256:"); ok && len(h) > 12 {
				return h[:12]
			}
			if len(s) > 12 {
				return s[:12]
			}
			return s
		},
		"date": func(v any) string {
			var t time.Time
			switch x := v.(type) {
			case time.Time:
				t = x
			case *time.Time:
				if x != nil {
					t = *x
				}
			}
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
		"size":  opm.HumanSize,
		"base":  path.Base,
		"title": func(s string) string { return strings.ToUpper(s[:1]) + s[1:] },
		"childKind": func(kind string) string {
			return map[string]string{"namespaces": "Projects", "projects": "Repositories", "repositories": "Tags"}[kind]
		},
		"referrerKind": func(at string) string {
			l := strings.ToLower(at)
			switch {
			case strings.Contains(l, "in-toto") || strings.Contains(l, "slsa") || strings.Contains(l, "provenance"):
				return "provenance"
			case strings.Contains(l, "sbom") || strings.Contains(l, "spdx") || strings.Contains(l, "cyclonedx"):
				return "SBOM"
			case strings.Contains(l, "signature") || strings.Contains(l, "cosign") || strings.Contains(l, "notary") || strings.Contains(l, "sigstore"):
				return "signature"
			}
			return at
		},
		"kind": func(mt string) string {
			switch mt {
			case opm.MediaTypeManifest:
				return "package"
			case opm.MediaTypeIndex, opm.MediaTypeDockerList:
				return "index"
			case opm.MediaTypeDockerManifest:
				return "docker image"
			}
			return mt
		},
		"nodeURL": func(root, p string) string { return root + p + "/" },
		"tagURL":  func(root, repo, tag string) string { return root + repo + "/tags/" + tag + "/" },
		"blobURL": func(v View, repo string, d digest.Digest) string {
			if v.BlobURL != "" {
				return strings.TrimSuffix(v.BlobURL, "/") + "/blobs/sha256/" + d.Encoded()
			}
			return v.Root + "v2/" + repo + "/blobs/" + d.String()
		},
		"manifestURL": func(v View, repo string, d digest.Digest) string {
			if v.Static {
				return v.Root + siteManifest(repo, d)
			}
			return v.Root + "v2/" + repo + "/manifests/" + d.String()
		},
	}
	for _, name := range []string{"list", "repo", "tag", "error"} {
		pages[name] = template.Must(template.New("").Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/"+name+".html"))
	}
}

type crumb struct{ Name, URL string }

// SearchResult is one name matching a search.
type SearchResult struct {
	Path        string
	Kind        string
	Description string
}

// View is how pages are rendered: served, or written as a static site.
type View struct {
	Root    string // prefix of every link: "/"
	Static  bool   // a static site (opm site): no search form
	BlobURL string // a bucket's public URL: blob links go there
	APIURL  string // the JSON listing
}

type pageData struct {
	View
	Title     string
	PageTitle string
	Search    bool
	Q         string
	Crumbs    []crumb
	Commit    string
	When      time.Time // the commit's time
	Listing   *Listing
	Tag       *TagDetail
	Results   []SearchResult
	Status    string // an error page's: "404 Not Found"
	Message   string // and what went wrong
}

// pageHeaders are the headers of every page: no script, no frame, no
// plugin, nothing from elsewhere; forms post only here; no referrer leaves.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (s *Server) routeWeb(mux *http.ServeMux) {
	mux.HandleFunc("GET /_opm/style.css", func(w http.ResponseWriter, r *http.Request) {
		b, _ := webFS.ReadFile("web/style.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(b)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w.Header())
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.serveWeb(w, r)
	})
}

// webPath splits a page path into names and a tag.
func webPath(p string) (parts []string, tag string, err error) {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	if len(seg) == 1 && seg[0] == "" {
		return nil, "", nil
	}
	if len(seg) == 5 && seg[3] == "tags" {
		tag, seg = seg[4], seg[:3]
		if !opm.ValidTag(tag) {
			return nil, "", opm.Errorf(opm.ErrNotFound, "tag %q is not a valid tag", tag)
		}
	}
	if len(seg) > 3 {
		return nil, "", opm.Errorf(opm.ErrNotFound, "no page %q", p)
	}
	for _, s := range seg {
		if !opm.ValidComponent(s) {
			return nil, "", opm.Errorf(opm.ErrNotFound, "no page %q", p)
		}
	}
	return seg, tag, nil
}

func (s *Server) serveWeb(w http.ResponseWriter, r *http.Request) {
	pv := View{Root: "/", APIURL: "/namespaces"}
	v, err := s.reg.View()
	if err != nil {
		s.webError(w, nil, pv, err)
		return
	}
	parts, tag, err := webPath(r.URL.Path)
	if err != nil {
		s.webError(w, v, pv, err)
		return
	}
	var buf bytes.Buffer
	if err := s.renderPage(r.Context(), &buf, v, parts, tag, r.URL.Query().Get("q"), pv); err != nil {
		if errors.Is(err, opm.ErrNotFound) && len(parts) > 0 {
			var ref opm.Reference
			if tag != "" {
				ref = opm.Reference{Repository: opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}, Tag: tag}
			}
			err = v.Missing(ref, parts) // naming what is missing, and the nearest name
		}
		s.webError(w, v, pv, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// webError answers an error as a page of the site's own look: its status
// and message, and the way back (v nil: no registry view to show).
func (s *Server) webError(w http.ResponseWriter, v *registry.View, pv View, err error) {
	status := opm.KindOf(err).HTTP
	if status >= 500 {
		s.log.Error("web", "err", err)
	}
	d := pageData{View: pv, Title: s.opts.Title, Search: true, PageTitle: http.StatusText(status),
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), Message: opm.OneLine(err)}
	if v != nil {
		d.Commit, d.When = v.Commit().String(), v.When()
	}
	var buf bytes.Buffer
	if perr := pages["error"].ExecuteTemplate(&buf, "layout", d); perr != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s: %s\n", d.Status, d.Message)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderPage writes the page of parts (and tag); q searches (root only).
func (s *Server) renderPage(ctx context.Context, w io.Writer, v *registry.View, parts []string, tag, q string, pv View) error {
	d := s.newPage(pv, v, parts)
	d.Q = q
	if tag != "" {
		td, err := tagDetail(ctx, v, opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}, tag)
		if err != nil {
			return err
		}
		return renderTag(w, d, td)
	}
	l, err := listing(ctx, v, parts, "")
	if err != nil {
		return err
	}
	if q != "" && len(parts) == 0 {
		if d.Results, err = search(ctx, v, q, 200); err != nil {
			return err
		}
	}
	return renderListing(w, d, l)
}

// newPage is what every page of parts shows.
func (s *Server) newPage(pv View, v *registry.View, parts []string) pageData {
	d := pageData{View: pv, Title: s.opts.Title, Search: !pv.Static, Commit: v.Commit().String(), When: v.When()}
	d.Crumbs = []crumb{{"registry", d.Root}}
	for i := range parts {
		d.Crumbs = append(d.Crumbs, crumb{parts[i], d.Root + strings.Join(parts[:i+1], "/") + "/"})
	}
	return d
}

func renderTag(w io.Writer, d pageData, td *TagDetail) error {
	d.Tag, d.PageTitle = td, td.Repository+":"+td.Name
	return pages["tag"].ExecuteTemplate(w, "layout", d)
}

func renderListing(w io.Writer, d pageData, l *Listing) error {
	d.Listing, d.PageTitle = l, l.Path
	if d.PageTitle == "" {
		d.PageTitle = "namespaces"
	}
	name := "list"
	if l.Kind == "tags" {
		name = "repo"
	}
	return pages[name].ExecuteTemplate(w, "layout", d)
}

// search finds namespaces, projects and repositories whose path contains q
// (case-insensitive), at most limit of them.
func search(ctx context.Context, v *registry.View, q string, limit int) ([]SearchResult, error) {
	q = strings.ToLower(strings.TrimSpace(q))
	var out []SearchResult
	err := v.WalkNodes(ctx, func(parts []string) (bool, error) {
		if len(out) >= limit {
			return false, nil
		}
		full := strings.Join(parts, "/")
		if strings.Contains(full, q) {
			nd, err := v.Node(parts)
			if err != nil {
				return false, err
			}
			out = append(out, SearchResult{Path: full, Kind: layout.LevelNames[len(parts)], Description: nd.Description})
		}
		return true, nil
	})
	return out, err
}
