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
	v, err := reg.View()
	if err != nil {
		return nil, err
	}
	sw := &siteWriter{
		ctx: ctx,
		s:   &Server{reg: reg, opts: Options{Title: o.Title}},
		v:   v,
		dir: dir,
		o:   o,
		res: &SiteResult{Dir: dir, Commit: v.Commit().String()},
	}
	css, _ := webFS.ReadFile("web/style.css")
	if err := sw.file("_opm/style.css", css); err != nil {
		return nil, err
	}
	return sw.res, sw.level(nil)
}

// siteWriter writes the static site of one view of the registry, counting
// what it writes in res.
type siteWriter struct {
	ctx context.Context
	s   *Server
	v   *registry.View
	dir string
	o   SiteOptions
	res *SiteResult
}

// file writes b as the site's file rel (slash-separated), making its
// directories.
func (sw *siteWriter) file(rel string, b []byte) error {
	p := filepath.Join(sw.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// api writes v as indented JSON to the listing API's file rel (under
// _opm/api/).
func (sw *siteWriter) api(rel string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	sw.res.JSON++
	return sw.file("_opm/api/"+rel, buf.Bytes())
}

// page writes the page of a listing l of parts, or of a tag td.
func (sw *siteWriter) page(parts []string, l *Listing, td *TagDetail) error {
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
	pv := View{Root: root, Generated: sw.o.Now, BlobURL: sw.o.BlobURL, APIURL: root + "_opm/api/namespaces.json"}
	d := sw.s.newPage(pv, sw.v, parts)
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
	sw.res.Pages++
	if rel != "" {
		rel += "/"
	}
	return sw.file(rel+"index.html", buf.Bytes())
}

// level writes the API answer and the page of the level parts (the root,
// a namespace, a project or a repository), then of everything below it.
func (sw *siteWriter) level(parts []string) error {
	if err := sw.ctx.Err(); err != nil {
		return err
	}
	l, err := listing(sw.ctx, sw.v, parts, "")
	if err != nil {
		return err
	}
	if err := sw.api(apiPath(parts)+".json", l); err != nil {
		return err
	}
	if err := sw.page(parts, l, nil); err != nil {
		return err
	}
	if len(parts) == 3 {
		return sw.tags(parts, l)
	}
	for _, it := range l.Items {
		if err := sw.level(append(append([]string{}, parts...), it.Name)); err != nil {
			return err
		}
	}
	return nil
}

// tags writes the API answer and the page of each tag in l, the listing of
// repository parts.
func (sw *siteWriter) tags(parts []string, l *Listing) error {
	repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
	for _, t := range l.Tags {
		td, err := tagDetail(sw.ctx, sw.v, repo, t.Name)
		if err != nil {
			return err
		}
		if err := sw.api(apiPath(parts)+"/"+t.Name+".json", td); err != nil {
			return err
		}
		if err := sw.page(parts, nil, td); err != nil {
			return err
		}
	}
	return nil
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
