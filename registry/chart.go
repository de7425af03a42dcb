package registry

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/openpm/opm"
)

// A Helm chart's own files, read from inside its archive for the pages and
// the listing API (docs/design.md §2): its Chart.yaml, values.yaml and
// README.md, as helm show chart|values|readme prints them.

// Chart holds the text of a chart's top files; a file the archive lacks is
// empty.
type Chart struct {
	ChartYAML  string `json:"chart_yaml,omitempty"`
	ValuesYAML string `json:"values_yaml,omitempty"`
	Readme     string `json:"readme,omitempty"`
}

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
	if m == nil || m.Kind() != "helm chart" {
		return nil, nil
	}
	var archive *opm.Descriptor
	for i, l := range m.Layers {
		if l.MediaType == opm.MediaTypeHelmChart {
			archive = &m.Layers[i]
			break
		}
	}
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
	c := &Chart{}
	files := map[string]*string{"Chart.yaml": &c.ChartYAML, "values.yaml": &c.ValuesYAML, "README.md": &c.Readme}
	tr := tar.NewReader(io.LimitReader(zr, maxChartArchive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return nil, opm.Errorf(opm.ErrInvalid, "chart archive %s: %v", archive.Digest, err)
		}
		// The chart's own files are CHART/<file>; a subchart's are deeper.
		dir, name := path.Split(path.Clean(h.Name))
		dst, ok := files[name]
		if !ok || h.Typeflag != tar.TypeReg || strings.Count(dir, "/") != 1 || *dst != "" {
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
		*dst = string(text)
	}
}
