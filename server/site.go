package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
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
}

// SiteResult counts the site's files and what WriteSite changed.
type SiteResult struct {
	Dir    string `json:"dir"`
	Commit string `json:"commit"`
	Pages  int    `json:"pages"` // the site's pages
	JSON   int    `json:"json"`  // the site's listing API files
	Files  int    `json:"files"` // every file of the site: pages, API, manifests, style
	// Written counts the files written because they were new or changed;
	// Removed, the files of an earlier run the registry no longer has
	// (pages of deleted tags and repositories).
	Written int `json:"written"`
	Removed int `json:"removed"`
}

// siteFiles lists, one per line, the files the last WriteSite into a
// directory made: the next run removes those it does not make again, and
// nothing else of the directory.
const siteFiles = "_opm/site-files"

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
//	dir/_opm/manifests/<ns>/<p>/<r>/<hex>.json   every manifest of the repository
//
// Names never begin with "_", so _opm cannot clash with a namespace.
//
// The site is exact and a function of the registry's head alone (pages say
// the commit and its time, not when they were written): a file is written
// only when its bytes change, each by a rename (a reader of the site never
// sees half a page), and the files of an earlier run that this one does not
// make — pages of deleted tags and repositories — are removed, with the
// directories they leave empty. Files of dir that no run made are left
// alone. A second run over an unchanged head writes nothing.
func WriteSite(ctx context.Context, reg *registry.Registry, dir string, o SiteOptions) (*SiteResult, error) {
	if o.Title == "" {
		o.Title = "registry"
	}
	v, err := reg.View()
	if err != nil {
		return nil, err
	}
	sw := &siteWriter{
		ctx:   ctx,
		s:     &Server{reg: reg, opts: Options{Title: o.Title}},
		v:     v,
		dir:   dir,
		o:     o,
		res:   &SiteResult{Dir: dir, Commit: v.Commit().String()},
		files: map[string][]byte{},
	}
	css, _ := webFS.ReadFile("web/style.css")
	sw.files["_opm/style.css"] = css
	if err := sw.level(nil); err != nil {
		return nil, err
	}
	return sw.res, sw.commit()
}

// commit makes dir hold exactly the files of the run: the list of files
// first grows to cover both runs (a run cut short leaves nothing it cannot
// remove later), then new and changed files are written, then the old
// run's others removed, then the list is this run's.
func (sw *siteWriter) commit() error {
	old, err := os.ReadFile(filepath.Join(sw.dir, filepath.FromSlash(siteFiles)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var stale []string
	for _, rel := range strings.Split(string(old), "\n") {
		if _, ok := sw.files[rel]; !ok && validSiteFile(rel) {
			stale = append(stale, rel)
		}
	}
	names := slices.Sorted(maps.Keys(sw.files))
	sw.res.Files = len(names)
	both := slices.Sorted(slices.Values(append(slices.Clone(names), stale...)))
	if _, err := sw.write(siteFiles, []byte(strings.Join(both, "\n"))); err != nil {
		return err
	}
	for _, rel := range names {
		if err := sw.ctx.Err(); err != nil {
			return err
		}
		wrote, err := sw.write(rel, sw.files[rel])
		if err != nil {
			return err
		}
		if wrote {
			sw.res.Written++
		}
	}
	for _, rel := range stale {
		p := filepath.Join(sw.dir, filepath.FromSlash(rel))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		sw.res.Removed++
		// The directories it leaves empty, up to dir.
		for d := filepath.Dir(p); d != sw.dir && strings.HasPrefix(d, sw.dir+string(filepath.Separator)); d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break // not empty, or gone
			}
		}
	}
	_, err = sw.write(siteFiles, []byte(strings.Join(names, "\n")))
	return err
}

// validSiteFile reports whether rel, a line of the list of files, may be
// removed: a relative slash path below the site's directory.
func validSiteFile(rel string) bool {
	return rel != "" && rel != siteFiles && fs.ValidPath(rel)
}

// siteWriter makes the static site of one view of the registry: files,
// then commit writes them, counting in res.
type siteWriter struct {
	ctx   context.Context
	s     *Server
	v     *registry.View
	dir   string
	o     SiteOptions
	res   *SiteResult
	files map[string][]byte // the site: slash path under dir, content
}

// write makes the site's file rel (slash-separated) hold b, unless it does
// (false): a temporary file renamed over it, its directories made. Not
// fsynced: a file a power cut left short differs from what the next run
// makes, which writes it again.
func (sw *siteWriter) write(rel string, b []byte) (bool, error) {
	p := filepath.Join(sw.dir, filepath.FromSlash(rel))
	if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, b) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".opm-site-*")
	if err != nil {
		return false, err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return false, err
	}
	return true, nil
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
	sw.files["_opm/api/"+rel] = buf.Bytes()
	return nil
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
	pv := View{Root: root, Static: true, BlobURL: sw.o.BlobURL, APIURL: root + "_opm/api/namespaces.json"}
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
	sw.files[rel+"index.html"] = buf.Bytes()
	return nil
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

// siteManifest is the site's file of the manifest d of repo, which pages
// link to (a server links to /v2/…/manifests/<digest>).
func siteManifest(repo string, d digest.Digest) string {
	return "_opm/manifests/" + repo + "/" + d.Encoded() + ".json"
}

// tags writes every manifest of the repository parts (its tags' and those
// kept by digest, an index's children), then the API answer and the page
// of each tag in l, its listing.
func (sw *siteWriter) tags(parts []string, l *Listing) error {
	repo := opm.Repository{Namespace: parts[0], Project: parts[1], Name: parts[2]}
	all, err := sw.v.Manifests(repo)
	if err != nil {
		return err
	}
	for _, e := range all {
		m, err := sw.v.Read(e)
		if err != nil {
			return err
		}
		sw.files[siteManifest(repo.Path(), e.Digest)] = m.Body
	}
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
