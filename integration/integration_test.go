// Package integration runs the real opm binary end to end: testscript
// scenarios in testdata/*.txtar, plus crash and concurrency tests.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/internal/opmtest"
	"github.com/openpm/opm/layout"
	"github.com/openpm/opm/registry"
)

// opmBin is the binary under test, built once by TestMain.
var opmBin string

func TestMain(m *testing.M) { opmtest.MainWithOpm(m, &opmBin) }

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			scriptEnv(env)
			return nil
		},
		Cmds: scriptCmds,
	})
}

// scriptCmds are the commands the scripts have beside testscript's own.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"mkfile":         cmdMkfile,
	"inject":         cmdInject,
	"commits":        cmdCommits,
	"blobs":          cmdBlobs,
	"chmod":          cmdChmod,
	"mkfifo":         cmdMkfifo,
	"symlink-to-abs": cmdSymlinkAbs,
	"pushchart":      cmdPushChart,
}

// scriptEnv gives a script the opm under test on PATH, its own home and
// HOME in the work directory, and a fixed author.
func scriptEnv(env *testscript.Env) {
	env.Setenv("PATH", filepath.Dir(opmBin)+string(os.PathListSeparator)+env.Getenv("PATH"))
	env.Setenv("OPM_HOME", filepath.Join(env.WorkDir, "home"))
	env.Setenv("GIT_AUTHOR_NAME", "Tess Ter")
	env.Setenv("GIT_AUTHOR_EMAIL", "tess@example.org")
	env.Setenv("HOME", env.WorkDir)
}

// mkfile NAME SIZE [SEED]: a file of SIZE pseudo-random bytes.
func cmdMkfile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: mkfile NAME SIZE [SEED]")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	seed := uint64(1)
	if len(args) > 2 {
		seed, err = strconv.ParseUint(args[2], 10, 64)
		ts.Check(err)
	}
	ts.Check(writeRandom(ts.MkAbs(args[0]), size, seed))
}

func writeRandom(name string, size int64, seed uint64) error {
	return opmtest.WriteRandom(name, size, seed)
}

// inject REF FILE: commit FILE's bytes as the tag file of REF, bypassing
// every check of opm push (what a hostile or broken writer could do).
func cmdInject(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: inject REF FILE")
	}
	ref, err := opm.ParseTagReference(args[0])
	ts.Check(err)
	body, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	repo, err := gitmeta.Init(filepath.Join(ts.Getenv("OPM_HOME"), "meta.git"))
	ts.Check(err)
	_, _, err = repo.Update(context.Background(), gitmeta.Signature{Name: "mallory", Email: "m@example.org"},
		func(*gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
			return []gitmeta.Change{{Path: layout.TagPath(ref.Repository, ref.Tag), Data: body}},
				gitmeta.Message{Subject: "inject " + ref.String()}, nil
		})
	ts.Check(err)
}

// pushchart REF ARCHIVE: push the Helm chart archive ARCHIVE (a .tgz) as
// helm push does, through the registry's manifest PUT (the HTTP API's
// door), before any daemon holds the home.
func cmdPushChart(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: pushchart REF ARCHIVE")
	}
	ref, err := opm.ParseTagReference(args[0])
	ts.Check(err)
	archive, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	ctx := context.Background()
	r, err := registry.Open(ctx, ts.Getenv("OPM_HOME"))
	ts.Check(err)
	defer r.Close()
	config := []byte(`{"name":"mychart","version":"0.1.0","apiVersion":"v2"}`)
	for _, b := range [][]byte{archive, config} {
		ts.Check(r.PutBlob(ctx, digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)))
	}
	desc := func(mt string, b []byte) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, digest.FromBytes(b), len(b))
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s],"annotations":{%q:"mychart",%q:"0.1.0"}}`, opm.MediaTypeManifest,
		desc(opm.MediaTypeHelmConfig, config), desc(opm.MediaTypeHelmChart, archive), opm.AnnotationTitle, opm.AnnotationVersion)
	_, _, err = r.PutManifest(ctx, ref.Repository, []string{ref.Tag}, []byte(m), opm.MediaTypeManifest)
	ts.Check(err)
}

// commits N: the metadata has exactly N commits on main.
func cmdCommits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: commits N")
	}
	out, _ := exec.Command("git", "-C", filepath.Join(ts.Getenv("OPM_HOME"), "meta.git"), "rev-list", "--count", "main").Output()
	got := string(bytes.TrimSpace(out))
	if got == "" {
		got = "0"
	}
	if (got == args[0]) == neg {
		ts.Fatalf("commits: have %s, want %s%s", got, map[bool]string{true: "not "}[neg], args[0])
	}
}

// blobs N: the local store holds exactly N blob files, each with the
// content its name says.
func cmdBlobs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: blobs N")
	}
	n, bad, err := verifyBlobDir(filepath.Join(ts.Getenv("OPM_HOME"), "blobs"))
	ts.Check(err)
	if len(bad) > 0 {
		ts.Fatalf("blobs with wrong content: %v", bad)
	}
	if (strconv.Itoa(n) == args[0]) == neg {
		ts.Fatalf("blobs: have %d, want %s", n, args[0])
	}
}

// chmod MODE FILE
func cmdChmod(ts *testscript.TestScript, neg bool, args []string) {
	mode, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	ts.Check(os.Chmod(ts.MkAbs(args[1]), os.FileMode(mode)))
}

// mkfifo NAME
func cmdMkfifo(ts *testscript.TestScript, neg bool, args []string) {
	ts.Check(exec.Command("mkfifo", ts.MkAbs(args[0])).Run())
}

// symlink-to-abs NAME TARGET: a symlink whose target is kept verbatim.
func cmdSymlinkAbs(ts *testscript.TestScript, neg bool, args []string) {
	ts.Check(os.Symlink(args[1], ts.MkAbs(args[0])))
}
