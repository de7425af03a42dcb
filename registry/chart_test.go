package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// putChart stores the blobs of a Helm chart whose archive is archive and
// returns its manifest as helm push writes it.
func putChart(t *testing.T, r *Registry, archive []byte) []byte {
	t.Helper()
	config := []byte(`{"name":"mychart","version":"0.1.0","apiVersion":"v2"}`)
	for _, b := range [][]byte{archive, config} {
		if err := r.PutBlob(context.Background(), digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(mt string, b []byte) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, digest.FromBytes(b), len(b))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s],"annotations":{%q:"mychart",%q:"0.1.0"}}`, opm.MediaTypeManifest,
		desc(opm.MediaTypeHelmConfig, config), desc(opm.MediaTypeHelmChart, archive), opm.AnnotationTitle, opm.AnnotationVersion))
}

func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fileNames(t *testing.T, v *View, ref opm.Reference) []string {
	t.Helper()
	p, err := v.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range p.Manifest.Files() {
		out = append(out, f.Path)
	}
	slices.Sort(out)
	return out
}

// TestChartFilesOfAnOldChart: a chart committed without its files (pushed
// before opm stored them) gets them when it is pushed again, and the head
// move names its tag as changed, so that a mount forgets the tag's old
// files; a chart whose archive does not read is pushed without them.
func TestChartFilesOfAnOldChart(t *testing.T) {
	ctx := context.Background()
	r := openHome(t, t.TempDir())
	ref := mustRef(t, "acme/charts/mychart:0.1.0")
	body := putChart(t, r, tgz(t, map[string]string{"mychart/Chart.yaml": "name: mychart\n", "mychart/values.yaml": "replicas: 1\n"}))
	// As a push before chart files: the tag file alone.
	if _, _, err := r.meta.Update(ctx, gitmeta.Signature{Name: "t", Email: "t@example.org"}, func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		return []gitmeta.Change{{Path: layout.TagPath(ref.Repository, ref.Tag), Data: body}}, gitmeta.Message{Subject: "push " + ref.String()}, nil
	}); err != nil {
		t.Fatal(err)
	}
	old, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	if got := fileNames(t, old, ref); slices.Contains(got, "values.yaml") {
		t.Fatalf("before: %v", got)
	}
	if _, committed, err := r.PutManifest(ctx, ref.Repository, []string{ref.Tag}, body, ""); err != nil || !committed {
		t.Fatalf("pushed again: committed %v, %v", committed, err)
	}
	v, err := r.View()
	if err != nil {
		t.Fatal(err)
	}
	if got := fileNames(t, v, ref); !slices.Equal(got, []string{"Chart.json", "Chart.yaml", "mychart-0.1.0.tgz", "values.yaml"}) {
		t.Errorf("after: %v", got)
	}
	stale, _, err := v.Stale(old)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(stale.Tags, ref) {
		t.Errorf("the head move does not name %s as changed: %+v", ref, stale)
	}

	bad := mustRef(t, "acme/charts/broken:0.1.0")
	body = putChart(t, r, []byte("not a gzip stream"))
	if _, committed, err := r.PutManifest(ctx, bad.Repository, []string{bad.Tag}, body, ""); err != nil || !committed {
		t.Fatalf("a chart whose archive does not read: committed %v, %v", committed, err)
	}
	if v, err = r.View(); err != nil {
		t.Fatal(err)
	}
	if got := fileNames(t, v, bad); !slices.Equal(got, []string{"Chart.json", "mychart-0.1.0.tgz"}) {
		t.Errorf("the broken chart: %v", got)
	}
}
