package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/registry"
)

// pushKinds pushes, over HTTP, one manifest of each kind other clients
// push into repo: a Docker schema-2 image, an OCI image with untitled
// layers, a Helm chart as helm push writes it, and an index of the two
// images with their platforms. It returns the layer blobs by name.
func pushKinds(e *env, repo string) map[string][]byte {
	blobs := map[string][]byte{
		"layer1":  []byte("gzipped layer one"),
		"layer2":  []byte("gzipped layer two"),
		"oci":     []byte("an oci layer"),
		"config":  []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`),
		"chart":   chartArchive(e.t),
		"chartjs": []byte(`{"name":"mychart","version":"0.1.0","apiVersion":"v2"}`),
	}
	d := map[string]digest.Digest{}
	for k, b := range blobs {
		d[k] = e.putBlob(repo, b)
	}
	desc := func(mt, k string) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, d[k], len(blobs[k]))
	}
	put := func(ref, mt, body string) digest.Digest {
		expect(e.t, e.do("PUT", "/v2/"+repo+"/manifests/"+ref, []byte(body), "Content-Type: "+mt), 201, "")
		return digest.FromString(body)
	}
	docker := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s,%s]}`, opm.MediaTypeDockerManifest,
		desc("application/vnd.docker.container.image.v1+json", "config"),
		desc("application/vnd.docker.image.rootfs.diff.tar.gzip", "layer1"), desc("application/vnd.docker.image.rootfs.diff.tar.gzip", "layer2"))
	dd := put("docker", opm.MediaTypeDockerManifest, docker)
	oci := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`, opm.MediaTypeManifest,
		desc("application/vnd.oci.image.config.v1+json", "config"), desc("application/vnd.oci.image.layer.v1.tar", "oci"))
	od := put("oci", opm.MediaTypeManifest, oci)
	helm := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s],"annotations":{%q:"mychart",%q:"0.1.0"}}`, opm.MediaTypeManifest,
		desc(opm.MediaTypeHelmConfig, "chartjs"), desc(opm.MediaTypeHelmChart, "chart"), opm.AnnotationTitle, opm.AnnotationVersion)
	put("0.1.0", opm.MediaTypeManifest, helm)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`,
		opm.MediaTypeIndex, opm.MediaTypeDockerManifest, dd, len(docker), opm.MediaTypeManifest, od, len(oci))
	put("multi", opm.MediaTypeIndex, index)
	return blobs
}

// TestEveryKindReadsAsFiles: what other clients push reads as files in
// opm — a Docker schema-2 image and an OCI image show their layers named
// by digest and their config; a Helm chart its archive named from the
// chart and Chart.json; an index says which manifests to name instead —
// and the pages label each kind. (A Docker manifest made files and pull
// fail, a Helm chart showed "0 files", and both were labelled "package".)
func TestEveryKindReadsAsFiles(t *testing.T) {
	e := newEnv(t, Options{})
	repo := "acme/img/app"
	blobs := pushKinds(e, repo)
	hex := func(k string) string { return digest.FromBytes(blobs[k]).Encoded() }
	r, _ := opm.ParseRepository(repo)
	for tag, want := range map[string][]string{
		"docker": {hex("layer1") + ".tar.gz", hex("layer2") + ".tar.gz", "config.json"},
		"oci":    {hex("oci") + ".tar", "config.json"},
		"0.1.0":  {"mychart-0.1.0.tgz", "Chart.json", "Chart.yaml", "values.yaml"},
	} {
		p, err := e.reg.Resolve(opm.Reference{Repository: r, Tag: tag})
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		var got []string
		for _, f := range p.Manifest.Files() {
			got = append(got, f.Path)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: files %v, want %v", tag, got, want)
		}
		// Pull writes them, byte for byte.
		dir := filepath.Join(t.TempDir(), tag)
		if _, err := e.reg.Pull(context.Background(), opm.Reference{Repository: r, Tag: tag}, dir, false, nil); err != nil {
			t.Fatalf("pull %s: %v", tag, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, want[0])); err != nil || len(b) == 0 {
			t.Errorf("pull %s: %s: %v", tag, want[0], err)
		}
	}
	// The chart's own values.yaml (not a subchart's) is a file of its own,
	// pulled beside the archive, and its manifest a referrer of the chart.
	chartDir := filepath.Join(t.TempDir(), "chart")
	chart := opm.Reference{Repository: r, Tag: "0.1.0"}
	if _, err := e.reg.Pull(context.Background(), chart, chartDir, false, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml")); err != nil || !strings.HasPrefix(string(b), "replicaCount: 3\n") {
		t.Errorf("pull of the chart: values.yaml %q, %v", b, err)
	}
	cp, err := e.reg.Resolve(chart)
	if err != nil {
		t.Fatal(err)
	}
	refs := string(expect(t, e.do("GET", "/v2/"+repo+"/referrers/"+cp.Digest.String(), nil), 200, ""))
	if !strings.Contains(refs, opm.ArtifactTypeChartFiles) {
		t.Errorf("the chart's files are not a referrer of it: %s", refs)
	}
	// They are blobs of the registry gc keeps (the manifest kept by
	// digest names them), and a second push of the chart adds nothing.
	if _, err := e.reg.GC(context.Background(), registry.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	pulled := filepath.Join(t.TempDir(), "again")
	if _, err := e.reg.Pull(context.Background(), chart, pulled, false, nil); err != nil {
		t.Fatalf("pull after gc: %v", err)
	}
	if _, committed, err := e.reg.PutManifest(context.Background(), r, []string{"0.1.0"}, cp.Bytes, ""); err != nil || committed {
		t.Errorf("the same chart pushed again: committed %v, %v", committed, err)
	}
	// An index: each manifest's files under a directory of its platform.
	p, err := e.reg.Resolve(opm.Reference{Repository: r, Tag: "multi"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.Manifest.Files() {
		got = append(got, f.Path)
	}
	slices.Sort(got)
	want := []string{"linux-amd64/" + hex("layer1") + ".tar.gz", "linux-amd64/" + hex("layer2") + ".tar.gz", "linux-amd64/config.json",
		"linux-arm64-v8/" + hex("oci") + ".tar", "linux-arm64-v8/config.json"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("index: files %v, want %v", got, want)
	}

	l, err := e.reg.List(context.Background(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, ti := range l.Tags {
		sizes[ti.Tag] = ti.Size
		if ti.Files == 0 && ti.Tag != "multi" { // an index counts no files of its own
			t.Errorf("opm ls: %s has 0 files", ti.Tag)
		}
	}
	if sizes["docker"] != int64(len(blobs["layer1"])+len(blobs["layer2"])) {
		t.Errorf("opm ls: docker is %d bytes", sizes["docker"])
	}
	page := string(expect(t, e.do("GET", "/"+repo+"/", nil), 200, ""))
	for _, kind := range []string{"container image", "helm chart", "index"} {
		if !strings.Contains(page, kind) {
			t.Errorf("the repository page does not label a %s", kind)
		}
	}
	if strings.Contains(page, ">package<") {
		t.Error("the repository page labels something a package")
	}
	tagPage := string(expect(t, e.do("GET", "/"+repo+"/tags/0.1.0/", nil), 200, ""))
	if !strings.Contains(tagPage, "mychart-0.1.0.tgz") || !strings.Contains(tagPage, "helm chart") {
		t.Errorf("the chart's page does not show its archive and kind")
	}
	// Its Chart.yaml and values.yaml, from inside the archive (not a
	// subchart's), on the page and in the listing API.
	for _, want := range []string{"<h2>values.yaml</h2>", "replicaCount: 3", "description: the chart", "&lt;b&gt;"} {
		if !strings.Contains(tagPage, want) {
			t.Errorf("the chart's page has no %q", want)
		}
	}
	if strings.Contains(tagPage, "sub: values") {
		t.Error("the chart's page shows a subchart's values")
	}
	var td TagDetail
	b := expect(t, e.do("GET", "/namespaces/acme/projects/img/repositories/app/tags/0.1.0", nil), 200, "")
	if err := json.Unmarshal(b, &td); err != nil || td.Chart == nil || !strings.Contains(td.Chart.ValuesYAML, "replicaCount: 3") || !strings.Contains(td.Chart.ChartYAML, "name: mychart") {
		t.Errorf("the listing API's chart: %v %+v", err, td.Chart)
	}
}

// chartArchive is a chart as helm package writes it: mychart/Chart.yaml,
// values.yaml, and a subchart with values of its own.
func chartArchive(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, body string }{
		{"mychart/Chart.yaml", "apiVersion: v2\nname: mychart\nversion: 0.1.0\ndescription: the chart\n"},
		{"mychart/values.yaml", "replicaCount: 3\nbanner: <b>hi</b>\n"},
		{"mychart/charts/sub/values.yaml", "sub: values\n"},
		{"mychart/templates/deployment.yaml", "kind: Deployment\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}
