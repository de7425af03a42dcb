package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openpm/opm/internal/opmtest"
)

type pruneJSON struct {
	DryRun  bool `json:"dry_run"`
	Evicted []struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"evicted"`
	Freed     int64  `json:"bytes_freed"`
	KeptInUse int    `json:"kept_in_use"`
	Reason    string `json:"reason"`
}

func (p pruneJSON) evicted(d string) bool {
	for _, e := range p.Evicted {
		if e.Digest == d {
			return true
		}
	}
	return false
}

func blobPath(home, d string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return filepath.Join(home, "blobs", "sha256", hex[:2], hex)
}

// TestCacheEvictOpenFile runs the real daemon: a file held open in the
// mount survives `opm cache prune --all` (carried out by the daemon),
// which evicts every other blob, and keeps reading the right bytes; once
// closed, the next prune evicts it and a fresh read fetches it again.
func TestCacheEvictOpenFile(t *testing.T) {
	for _, mode := range []string{"passthrough", "plain", "noopen"} {
		t.Run(mode, func(t *testing.T) {
			// FUSE alone: through the kernel overlay the daemon sees no
			// opens (docs/mount.md, "Eviction").
			env := []string{"OPM_OVERLAY=0"}
			switch mode {
			case "passthrough":
				env = append(env, "OPM_FUSE_NOOPEN=0")
			case "plain":
				env = append(env, "OPM_FUSE_NOOPEN=0", "OPM_FUSE_PASSTHROUGH=0")
			}
			home := filepath.Join(t.TempDir(), "home")
			bucket := t.TempDir()
			opmOK(t, home, nil, "config", "opm.blobs", "file://"+bucket)
			src := sourceTree(t, 7)
			opmOK(t, home, nil, "push", "acme/web/site:v1", src)
			files := packageFiles(t, home, "acme/web/site:v1")
			var held, other fileInfo
			for _, f := range files {
				switch f.Path {
				case "lib/b/big.dat":
					held = f
				case "lib/a/one.so":
					other = f
				}
			}
			if held.Digest == "" || other.Digest == "" {
				t.Fatalf("package files: %+v", files)
			}
			want, err := os.ReadFile(filepath.Join(src, held.Path))
			must(t, err)
			mnt := mountDaemon(t, home, env...)

			f, err := os.Open(filepath.Join(mnt, "acme/web/site/v1", held.Path))
			must(t, err)
			defer f.Close()
			first := make([]byte, 1<<20)
			if _, err := io.ReadFull(f, first); err != nil {
				t.Fatal(err)
			}

			var res pruneJSON
			must(t, json.Unmarshal([]byte(opmOK(t, home, nil, "cache", "prune", "--all", "--json")), &res))
			if res.evicted(held.Digest) || !res.evicted(other.Digest) || res.KeptInUse < 1 {
				t.Fatalf("prune --all with %s open: %+v", held.Path, res)
			}
			if _, err := os.Stat(blobPath(home, held.Digest)); err != nil {
				t.Fatalf("the open blob's file is gone: %v", err)
			}
			if _, err := os.Stat(blobPath(home, other.Digest)); !os.IsNotExist(err) {
				t.Fatalf("an evicted blob's file is still there: %v", err)
			}
			// ls through the daemon says it is open.
			var ls []struct {
				Digest string `json:"digest"`
				InUse  bool   `json:"in_use"`
			}
			must(t, json.Unmarshal([]byte(opmOK(t, home, nil, "cache", "ls", "--json")), &ls))
			if len(ls) == 0 || ls[0].Digest == "" {
				t.Fatalf("cache ls: %+v", ls)
			}
			for _, b := range ls {
				if b.Digest == held.Digest && !b.InUse {
					t.Fatalf("cache ls: %s not marked in use", held.Digest)
				}
			}
			rest, err := io.ReadAll(f)
			must(t, err)
			if got := append(first, rest...); !bytes.Equal(got, want) {
				t.Fatalf("read of the open file after prune: %d bytes, differ from the source", len(got))
			}
			must(t, f.Close())
			// The kernel tells the daemon of the close afterwards
			// (FUSE_RELEASE is sent asynchronously): wait until the
			// daemon no longer counts the blob in use.
			if mode != "noopen" {
				opmtest.Eventually(t, "the daemon to see "+held.Path+" closed", func() error {
					must(t, json.Unmarshal([]byte(opmOK(t, home, nil, "cache", "ls", "--json")), &ls))
					for _, b := range ls {
						if b.Digest == held.Digest && b.InUse {
							return errors.New("cache ls: still in use")
						}
					}
					return nil
				})
			}

			// Closed: the next prune takes it. With NoOpen the mount's
			// cache of open files may keep it a while; it is in use then.
			must(t, json.Unmarshal([]byte(opmOK(t, home, nil, "cache", "prune", "--all", "--json")), &res))
			if mode != "noopen" && !res.evicted(held.Digest) {
				t.Fatalf("prune --all after close: %+v", res)
			}
			if mode == "noopen" && res.evicted(held.Digest) == (res.KeptInUse > 0) {
				t.Fatalf("prune --all after close (noopen): %+v", res)
			}
			if res.evicted(held.Digest) {
				if _, err := os.Stat(blobPath(home, held.Digest)); !os.IsNotExist(err) {
					t.Fatalf("evicted, but its file is still there: %v", err)
				}
			}
			// A fresh read: the right bytes, fetched again from the bucket.
			for _, p := range []string{held.Path, other.Path} {
				out, err := exec.Command("cat", filepath.Join(mnt, "acme/web/site/v1", p)).Output()
				must(t, err)
				src, _ := os.ReadFile(filepath.Join(src, p))
				if !bytes.Equal(out, src) {
					t.Fatalf("%s read after eviction: %d bytes, differ from the source", p, len(out))
				}
			}
			if _, err := os.Stat(blobPath(home, other.Digest)); err != nil {
				t.Fatalf("the evicted blob was not fetched again: %v", err)
			}
		})
	}
}
