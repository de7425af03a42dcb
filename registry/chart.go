package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// A Helm chart's own files, read from inside its archive (docs/design.md
// §2): its Chart.yaml, values.yaml and README.md, as helm show
// chart|values|readme prints them. The pages and the listing API read them
// from the archive; a push of a chart also stores them as blobs of their
// own, named by a manifest kept by digest whose subject is the chart
// (opm.ArtifactTypeChartFiles), so that the mount and opm pull show them as
// files beside the archive.

// Chart holds the text of a chart's top files; a file the archive lacks is
// empty.
type Chart struct {
	ChartYAML  string `json:"chart_yaml,omitempty"`
	ValuesYAML string `json:"values_yaml,omitempty"`
	Readme     string `json:"readme,omitempty"`
}

// chartMembers are the chart's top files read, in this order.
var chartMembers = []string{"Chart.yaml", "values.yaml", "README.md"}

// maxChartFile bounds each file read from a chart (a page shows it whole),
// maxChartArchive the archive read to find them.
const (
	maxChartFile    = 1 << 20
	maxChartArchive = 64 << 20
)

// ChartFiles reads the top files of the Helm chart m holds (nil when m is
// not a chart). The archive is made local as any blob read is; a file over
// maxChartFile or not UTF-8 is refused, naming it.
func (v *View) ChartFiles(ctx context.Context, m *opm.AnyManifest) (*Chart, error) {
	return v.r.chartFiles(ctx, m)
}

// Chart reads the top files of the Helm chart bytes, a manifest, holds:
// what opm inspect --values prints. Another kind is an opm.ErrInvalid
// error naming it.
func (r *Registry) Chart(ctx context.Context, ref opm.Reference, bytes []byte) (*Chart, error) {
	m, err := opm.ParseAnyManifest(bytes, "")
	if err != nil {
		return nil, err
	}
	c, err := r.chartFiles(ctx, m)
	if err == nil && c == nil {
		err = opm.Errorf(opm.ErrInvalid, "%s is a %s, not a helm chart", ref, m.Kind())
	}
	return c, err
}

func (r *Registry) chartFiles(ctx context.Context, m *opm.AnyManifest) (*Chart, error) {
	members, err := r.chartMembers(ctx, m)
	if members == nil || err != nil {
		return nil, err
	}
	c := &Chart{}
	for i, dst := range []*string{&c.ChartYAML, &c.ValuesYAML, &c.Readme} {
		if f, ok := members[chartMembers[i]]; ok {
			*dst = string(f.data)
		}
	}
	return c, nil
}

// chartMember is a top file read from a chart's archive.
type chartMember struct {
	data []byte
	hdr  *tar.Header
}

// chartArchive is the archive layer of the Helm chart m holds, nil when m
// is not a chart.
func chartArchive(m *opm.AnyManifest) *opm.Descriptor {
	if m == nil || m.Kind() != "helm chart" {
		return nil
	}
	for i, l := range m.Layers {
		if l.MediaType == opm.MediaTypeHelmChart {
			return &m.Layers[i]
		}
	}
	return nil
}

// chartMembers reads the top files (chartMembers) of the Helm chart m
// holds, by name; nil, nil when m is not a chart.
func (r *Registry) chartMembers(ctx context.Context, m *opm.AnyManifest) (map[string]chartMember, error) {
	archive := chartArchive(m)
	if archive == nil {
		return nil, nil
	}
	if archive.Size > maxChartArchive {
		return nil, opm.Errorf(opm.ErrTooLarge, "chart archive %s: %s, over the %s this reads", archive.Digest, opm.HumanSize(archive.Size), opm.HumanSize(maxChartArchive))
	}
	b, err := r.OpenBlob(ctx, archive.Digest, archive.Size)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(rd)
	if err != nil {
		return nil, opm.Errorf(opm.ErrInvalid, "chart archive %s: %v", archive.Digest, err)
	}
	out := map[string]chartMember{}
	tr := tar.NewReader(io.LimitReader(zr, maxChartArchive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, opm.Errorf(opm.ErrInvalid, "chart archive %s: %v", archive.Digest, err)
		}
		// The chart's own files are CHART/<file>; a subchart's are deeper.
		dir, name := path.Split(path.Clean(h.Name))
		_, seen := out[name]
		if seen || !slices.Contains(chartMembers, name) || h.Typeflag != tar.TypeReg || strings.Count(dir, "/") != 1 {
			continue
		}
		if h.Size > maxChartFile {
			return nil, opm.Errorf(opm.ErrTooLarge, "chart archive %s: %s is %s, over %s", archive.Digest, h.Name, opm.HumanSize(h.Size), opm.HumanSize(maxChartFile))
		}
		text, err := io.ReadAll(io.LimitReader(tr, maxChartFile))
		if err != nil {
			return nil, fmt.Errorf("chart archive %s: %w", archive.Digest, err)
		}
		if !utf8.Valid(text) {
			return nil, opm.Errorf(opm.ErrInvalid, "chart archive %s: %s is not UTF-8", archive.Digest, h.Name)
		}
		out[name] = chartMember{data: text, hdr: h}
	}
}

// chartFilesManifest stores the top files of the Helm chart m (whose
// manifest is subject) as blobs and returns the manifest naming them, kept
// by digest with the chart as its subject (opm.ArtifactTypeChartFiles); nil
// when m is no chart or its archive has none of them. The same chart gives
// the same bytes.
func (r *Registry) chartFilesManifest(ctx context.Context, m *opm.AnyManifest, subject opm.Descriptor) ([]byte, error) {
	members, err := r.chartMembers(ctx, m)
	if len(members) == 0 || err != nil {
		return nil, err
	}
	var files []opm.File
	for _, name := range chartMembers {
		f, ok := members[name]
		if !ok {
			continue
		}
		d := digest.FromBytes(f.data)
		if err := r.PutBlob(ctx, d, int64(len(f.data)), bytes.NewReader(f.data)); err != nil {
			return nil, err
		}
		file := opm.File{Path: name, Mode: 0o644, Size: int64(len(f.data)), Digest: d, MediaType: chartMediaType(name)}
		if t := f.hdr.ModTime; !t.Before(opm.MinMTime) && !t.After(opm.MaxMTime) && !t.IsZero() {
			file.ModTime = t.UTC()
		}
		files = append(files, file)
	}
	pm, err := opm.NewPackage(files, nil)
	if err != nil {
		return nil, err
	}
	pm.ArtifactType = opm.ArtifactTypeChartFiles
	pm.Subject = &subject
	b, _, err := pm.Encode()
	return b, err
}

func chartMediaType(name string) string {
	if strings.HasSuffix(name, ".md") {
		return "text/markdown"
	}
	return "application/yaml"
}

// chartFilesChange is the change PutManifest adds for the Helm chart m
// whose manifest (body) is d in repo: its top files' manifest, kept by
// digest (chartFilesManifest). A chart whose head already has them costs no
// read of its archive; one whose archive cannot be read is pushed without
// them, with a warning: its archive is still served as it is.
func (r *Registry) chartFilesChange(ctx context.Context, repo opm.Repository, m *opm.AnyManifest, body []byte, d digest.Digest) (*gitmeta.Change, error) {
	if chartArchive(m) == nil {
		return nil, nil
	}
	if v, err := r.View(); err != nil {
		return nil, err
	} else if have, err := v.chartFilesOf(repo, d); err != nil || len(have) > 0 {
		return nil, err
	}
	mt := m.MediaType
	if mt == "" {
		mt = opm.MediaTypeManifest
	}
	b, err := r.chartFilesManifest(ctx, m, opm.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body))})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		slog.Warn("helm chart pushed without its files: the archive cannot be read", "repository", repo.Path(), "digest", d, "err", opm.OneLine(err))
		return nil, nil
	}
	if b == nil {
		return nil, nil
	}
	return &gitmeta.Change{Path: layout.ManifestPath(repo, digest.FromBytes(b)), Data: b}, nil
}

// chartFilesOf lists the manifests kept by digest in repo whose subject is
// the chart d and whose type is opm.ArtifactTypeChartFiles, in the order of
// their digests.
func (v *View) chartFilesOf(repo opm.Repository, d digest.Digest) ([]*opm.AnyManifest, error) {
	kept, err := v.manifestsIn(layout.ManifestsDir(repo))
	if err != nil {
		return nil, err
	}
	var out []*opm.AnyManifest
	for _, e := range kept {
		sm, err := v.Read(e)
		if err != nil {
			return nil, err
		}
		if fm := sm.Manifest; fm != nil && fm.ArtifactType == opm.ArtifactTypeChartFiles && fm.Subject != nil && fm.Subject.Digest == d && fm.FilesView() != nil {
			out = append(out, fm)
		}
	}
	return out, nil
}

// withChartFiles adds to pm, the files view of the Helm chart d of repo,
// the files of its chart-files manifests (chartFilesOf) where no file has
// the name already. pm is returned as it is when there is none.
func (v *View) withChartFiles(repo opm.Repository, d digest.Digest, pm *opm.Manifest) (*opm.Manifest, error) {
	found, err := v.chartFilesOf(repo, d)
	if len(found) == 0 || err != nil {
		return pm, err
	}
	taken := map[string]bool{}
	for _, l := range pm.Layers {
		taken[l.Annotations[opm.AnnotationTitle]] = true
	}
	out := *pm
	out.Layers = slices.Clone(pm.Layers)
	for _, fm := range found {
		for _, l := range fm.FilesView().Layers {
			if t := l.Annotations[opm.AnnotationTitle]; !taken[t] {
				taken[t] = true
				out.Layers = append(out.Layers, l)
			}
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return opm.ParseManifest(b)
}
