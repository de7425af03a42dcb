package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
	"github.com/openpm/opm/cas"
	"github.com/openpm/opm/cas/castest"
	"github.com/openpm/opm/internal/faultproxy"
	"github.com/openpm/opm/internal/opmtest"
)

// The CernVM-FS shape: one publisher pushes to a git origin and a SeaweedFS
// bucket; four reader daemons, each with its own home and mount and its own
// counting proxy in front of the bucket, follow the origin and each read a
// different subset, while the publisher pushes new tags, removes one and
// runs gc. Every reader sees each new tag whole and within its follow
// interval, never wrong bytes; the proxies show each blob fetched at most
// once per reader, only blobs of what it read, no LIST and no HEAD on the
// read path, and no request at all from a follow with nothing new.
func TestManyReaders(t *testing.T) {
	opmtest.RequireFUSE(t)
	srv := castest.StartServer(t, "s3")
	srv.SetEnv(t)
	bucketURL := srv.NewBucket(t)
	bucketName := strings.TrimPrefix(strings.SplitN(bucketURL, "?", 2)[0], "s3://")
	git := startGitDaemon(t)
	meta := git.repo(t, "meta.git")
	pub := t.TempDir()
	mustOpm(t, pub, "remote", "add", "origin", "--meta", meta, "--blobs", bucketURL)

	const repos, interval = 4, 300 * time.Millisecond
	src := map[string]string{} // tag (acme/lib/rK:vN) → its files
	ref := func(repo, version int) string { return fmt.Sprintf("acme/lib/r%d:v%d", repo, version) }
	for k := range repos {
		for v := 1; v <= 2; v++ {
			src[ref(k, v)] = pkgDir(t, uint64(100*v+k), 3, 40_000)
		}
		mustOpm(t, pub, "push", ref(k, 1), src[ref(k, 1)])
	}

	type reader struct {
		home, mnt string
		proxy     *faultproxy.Proxy
		repos     []int
		from      int // the proxy's requests before the mount
	}
	readers := make([]*reader, 4)
	for i := range readers {
		p, err := faultproxy.New("http://" + srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		r := &reader{home: t.TempDir(), mnt: filepath.Join(t.TempDir(), "mnt"), proxy: p, repos: []int{i, (i + 1) % repos}}
		must(t, os.Mkdir(r.mnt, 0o755))
		mustOpm(t, r.home, "remote", "add", "origin", "--meta", meta, "--blobs", srv.URL(bucketName, strings.TrimPrefix(p.URL, "http://")))
		r.from = len(p.Requests())
		opmOK(t, r.home, nil, "mount", "--daemon", "--sync-interval", interval.String(), r.mnt)
		t.Cleanup(func() { unmountAndWait(t, r.home, r.mnt) })
		readers[i] = r
	}

	// readTag waits for a tag to appear in a reader's mount, then compares
	// every file, the moment it appears (a partial package would differ),
	// and again (now from the local store). It reports how long the tag
	// took to appear, and when it did.
	readTag := func(r *reader, repo, version int) (time.Time, error) {
		dir := filepath.Join(r.mnt, fmt.Sprintf("acme/lib/r%d/v%d", repo, version))
		want := src[ref(repo, version)]
		if err := opmtest.Wait(dir+" to appear", appears(dir)); err != nil {
			return time.Time{}, err
		}
		seen := time.Now()
		for range 2 {
			if out, err := exec.Command("diff", "-r", want, dir).CombinedOutput(); err != nil {
				return seen, fmt.Errorf("%s differs from what was pushed: %v\n%s", dir, err, out)
			}
		}
		return seen, nil
	}
	// eachReader runs fn for every reader at once and waits.
	eachReader := func(fn func(r *reader) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(readers))
		for i, r := range readers {
			wg.Go(func() { errs[i] = fn(r) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("reader %d: %v", i, err)
			}
		}
	}

	eachReader(func(r *reader) error {
		for _, k := range r.repos {
			if _, err := readTag(r, k, 1); err != nil {
				return err
			}
		}
		return nil
	})

	// The publisher pushes v2 of every repository, removes r3:v1 and
	// collects its blobs from the bucket while the readers wait for and
	// read the new tags.
	published := make(chan error, 1)
	var mu sync.Mutex
	pushed := map[string]time.Time{} // tag → when its push returned
	go func() {
		// (opm rm commits in the home; the next push takes it to origin.)
		var cmds [][]string
		for k := range repos {
			if k == repos-1 {
				cmds = append(cmds, []string{"rm", ref(3, 1)})
			}
			cmds = append(cmds, []string{"push", ref(k, 2), src[ref(k, 2)]})
		}
		cmds = append(cmds, []string{"gc", "--remote", "origin", "--grace", "0s", "--keep", "0s"})
		for _, args := range cmds {
			cmd := exec.Command(opmBin, args...)
			cmd.Env = append(os.Environ(), "OPM_HOME="+pub)
			if out, err := cmd.CombinedOutput(); err != nil {
				published <- fmt.Errorf("opm %v: %v\n%s", args, err, out)
				return
			}
			mu.Lock()
			pushed[args[1]] = time.Now()
			mu.Unlock()
		}
		published <- nil
	}()
	var seen []struct {
		ref  string
		when time.Time
	}
	eachReader(func(r *reader) error {
		for _, k := range r.repos {
			when, err := readTag(r, k, 2)
			if err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, struct {
				ref  string
				when time.Time
			}{ref(k, 2), when})
			mu.Unlock()
		}
		return nil
	})
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	eachReader(func(r *reader) error {
		gone := filepath.Join(r.mnt, "acme/lib/r3/v1")
		if err := opmtest.Wait(gone+" to go after it was removed", disappears(gone)); err != nil {
			head, _ := exec.Command("git", "-C", filepath.Join(r.home, "meta.git"), "log", "--oneline", "-3", "main").CombinedOutput()
			ls, _ := exec.Command("ls", "-la", filepath.Dir(gone)).CombinedOutput()
			return fmt.Errorf("%v; reader at\n%s\norigin at %s\n%s", err, head, git.head(t, "meta.git"), ls)
		}
		return nil
	})
	var slowest time.Duration
	for _, s := range seen {
		slowest = max(slowest, s.when.Sub(pushed[s.ref]))
	}
	t.Logf("new tags appeared in every mount at most %v after their push returned (follow interval %v)", slowest, interval)

	// gc took r3:v1's blobs (no other tag has them) out of the bucket.
	bucket, err := cas.OpenBucket(context.Background(), bucketURL)
	must(t, err)
	defer bucket.Close()
	entries, err := os.ReadDir(src[ref(3, 1)])
	must(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src[ref(3, 1)], e.Name()))
		must(t, err)
		d := digest.FromBytes(b)
		if _, err := bucket.Stat(context.Background(), d); !errors.Is(err, opm.ErrNotFound) {
			t.Errorf("blob %s of the removed r3:v1 after gc: %v, want not found", d, err)
		}
	}

	// The bucket requests of each reader's read path.
	blobOf := map[string]string{} // blob key → tag
	for ref, dir := range src {
		entries, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			must(t, err)
			sum := sha256.Sum256(b)
			blobOf["blobs/sha256/"+hex.EncodeToString(sum[:])] = ref
		}
	}
	for i, r := range readers {
		reqs := r.proxy.Requests()[r.from:]
		gets := map[string]int{}
		var heads, lists int
		for _, q := range reqs {
			switch {
			case q.List:
				lists++
			case q.Method == "HEAD":
				heads++
			case q.Method == "GET":
				gets[q.Key]++
			default:
				t.Errorf("reader %d: a %s of %q on the read path", i, q.Method, q.Key)
			}
		}
		read := map[string]bool{}
		for _, k := range r.repos {
			read[ref(k, 1)] = true
			read[ref(k, 2)] = true
		}
		want := 0
		for key, ref := range blobOf {
			if read[ref] {
				want++
				if gets[key] != 1 {
					t.Errorf("reader %d: blob of %s fetched %d times, want once", i, ref, gets[key])
				}
			}
		}
		for key, n := range gets {
			if !read[blobOf[key]] {
				t.Errorf("reader %d: fetched %q (%d times), which it never read", i, key, n)
			}
		}
		if lists != 0 || heads != 0 {
			t.Errorf("reader %d: %d LISTs and %d HEADs on the read path, want none", i, lists, heads)
		}
		t.Logf("reader %d: %d requests: %d GETs of %d blobs, %d HEADs, %d LISTs", i, len(reqs), len(reqs)-heads-lists, want, heads, lists)
	}

	// Follows with nothing new: not one bucket request.
	before := make([]int, len(readers))
	for i, r := range readers {
		before[i] = len(r.proxy.Requests())
	}
	time.Sleep(5 * interval)
	for i, r := range readers {
		if n := len(r.proxy.Requests()) - before[i]; n != 0 {
			t.Errorf("reader %d: %d bucket requests during follows with nothing new, want 0: %v", i, n, r.proxy.Requests()[before[i]:])
		}
	}
}
