package server

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// SiteOptions configure WriteSite.
type SiteOptions struct {
	Title string
	// BlobURL is the public URL of the registry's bucket: file links go to
	// <BlobURL>/blobs/sha256/<hex>. Empty: links go to /v2/… of an
	// `opm serve` on the same host.
	BlobURL string
	// Now is the generation time shown in the footer (zero: time.Now).
	Now time.Time
}

// SiteResult counts what WriteSite wrote.
type SiteResult struct {
	Dir    string `json:"dir"`
	Commit string `json:"commit"`
	Pages  int    `json:"pages"`
	JSON   int    `json:"json"`
}

// WriteSite writes the web pages of the registry's head and the JSON of the
// listing API as a static site into dir, for any static host:
//
//	dir/index.html                               namespaces
//	dir/<ns>/index.html, <ns>/<p>/index.html, <ns>/<p>/<r>/index.html
//	dir/<ns>/<p>/<r>/tags/<t>/index.html         files, blobs, history
//	dir/_opm/style.css
//	dir/_opm/api/namespaces.json                 the listing API, one file
//	dir/_opm/api/namespaces/<ns>/projects.json   per answer (paths of the API
//	…/projects/<p>/repositories.json             plus .json)
//	…/repositories/<r>/tags.json, …/tags/<t>.json
//
// Names never begin with "_", so _opm cannot clash with a namespace.
func WriteSite(ctx context.Context, reg *registry.Registry, dir string, o SiteOptions) (*SiteResult, error) {
	if o.Title == "" {
		o.Title = "registry"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	s := &Server{reg: reg, opts: Options{Title: o.Title}}
	v, err := reg.View()
	if err != nil {
		return nil, err
	}
	res := &SiteResult{Dir: dir, Commit: v.Commit().String()}
	write := func(rel string, b []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o644)
	}
	css, _ := webFS.ReadFile("web/style.css")
	if err := write("_opm/style.css", css); err != nil {
		return nil, err
	}
	api := func(rel string, v any) error {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		res.JSON++
		return write("_opm/api/"+rel, buf.Bytes())
	}
	// page writes the page of a listing l of parts, or of a tag td.
	page := func(parts []string, l *Listing, td *TagDetail) error {
		// Links are relative to the site's root, which is this many
		// directories up.
		depth := len(parts)
		rel := strings.Join(parts, "/")
		if td != nil {
			depth += 2
			rel += "/tags/" + td.Name
		}
		root := strings.Repeat("../", depth)
		if root == "" {
			root = "./"
		}
		pv := View{Root: root, Generated: o.Now, BlobURL: o.BlobURL, APIURL: root + "_opm/api/namespaces.json"}
		d := s.newPage(pv, v, parts)
		var buf bytes.Buffer
		var err error
		if td != nil {
			err = renderTag(&buf, d, td)
		} else {
			err = renderListing(&buf, d, l)
		}
		if err != nil {
			return err
		}
		res.Pages++
		if rel != "" {
			rel += "/"
		}
		return write(rel+"index.html", buf.Bytes())
	}
	var walk func(parts []string) error
	walk = func(parts []string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := listing(ctx, v, parts, "")
		if err != nil {
			return err
		}
		if err := api(apiPath(parts)+".json", l); err != nil {
			return err
		}
		if err := page(parts, l, nil); err != nil {
			return err
		}
		if len(parts) == 3 {
			repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
			for _, t := range l.Tags {
				td, err := tagDetail(ctx, v, repo, t.Name)
				if err != nil {
					return err
				}
				if err := api(apiPath(parts)+"/"+t.Name+".json", td); err != nil {
					return err
				}
				if err := page(parts, nil, td); err != nil {
					return err
				}
			}
			return nil
		}
		for _, it := range l.Items {
			if err := walk(append(append([]string{}, parts...), it.Name)); err != nil {
				return err
			}
		}
		return nil
	}
	return res, walk(nil)
}

// apiPath is the listing API's path of a level (without ".json").
func apiPath(parts []string) string {
	p := "namespaces"
	kids := []string{"projects", "repositories", "tags"}
	for i, name := range parts {
		p += "/" + name + "/" + kids[i]
	}
	return p
}
