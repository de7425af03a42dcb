package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openpm/opm/daemon"
	opmfs "github.com/openpm/opm/fs"
	"github.com/openpm/opm/internal/opmtest"
)

// TestUmountWhileLooking: `opm umount` succeeds while someone looks into
// package after package (lookups, no descriptor held), so that the daemon
// is mounting overlays as the unmount comes; and it returns only once the
// daemon has let the home go.
func TestUmountWhileLooking(t *testing.T) {
	home := t.TempDir()
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n"})
	opmOK(t, home, nil, "push", "acme/web/site:v0", src)
	const tags = 300
	for i := 1; i <= tags; i++ {
		opmOK(t, home, nil, "tag", "acme/web/site:v0", fmt.Sprintf("acme/web/site:v%d", i))
	}
	mnt := mountDaemon(t, home)
	overlay := mountStatus(t, mnt).Overlay.Off == ""
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i = (i + 1) % (tags + 1) {
			select {
			case <-stop:
				return
			default:
				os.Lstat(filepath.Join(mnt, "acme/web/site", fmt.Sprintf("v%d", i), "a"))
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	if overlay {
		opmtest.Eventually(t, "overlays mounted as packages are looked into", func() error {
			st, err := opmfs.ReadStatus(mnt)
			if err == nil && st.Overlay.Mounts < 50 {
				err = fmt.Errorf("%d overlays mounted", st.Overlay.Mounts)
			}
			return err
		})
	}
	out := opmOK(t, home, nil, "umount", mnt)
	if daemon.Held(home) {
		t.Errorf("opm umount returned (%q) while the daemon still holds the home", out)
	}
	if _, ok := opmfs.MountedHome(mnt); ok {
		t.Error("still mounted after opm umount")
	}
	if !strings.Contains(out, "unmounted "+mnt) {
		t.Errorf("opm umount said %q, want it to say it unmounted %s", out, mnt)
	}
}

// holdOpen starts sleep with its standard input open on file, or its
// working directory in dir when file is "", and stops it when the test
// ends (or when the caller does).
func holdOpen(t *testing.T, file, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child keeps its own descriptor
		cmd.Stdin = f
	} else {
		cmd.Dir = dir
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestUmountBusy: while processes use the mount, opm umount is refused in
// one line (exit 7) that names them and suggests --lazy, and the mount goes
// on serving, overlays included; once they are gone it unmounts.
func TestUmountBusy(t *testing.T) {
	home := t.TempDir()
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n", "d/b": "b\n"})
	opmOK(t, home, nil, "push", "acme/web/site:v1", src)
	mnt := mountDaemon(t, home)
	pkg := filepath.Join(mnt, "acme/web/site/v1")
	overlay := mountStatus(t, mnt).Overlay.Off == ""
	if overlay {
		opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	}
	opener := holdOpen(t, filepath.Join(pkg, "a"), "")
	dweller := holdOpen(t, "", filepath.Join(mnt, "acme"))

	out, err := runOpm(t, home, "umount", mnt)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("opm umount of a busy mount: %v, want exit 7 (busy)\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("pid %d (sleep: 1 open file)", opener.Process.Pid),
		fmt.Sprintf("pid %d (sleep: working directory)", dweller.Process.Pid),
		"opm umount --lazy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("opm umount said %q; want it to name %q", out, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("the refusal is %d lines, want one: %q", n+1, out)
	}
	// Nothing was taken down: the daemon serves, the overlay still covers
	// the package, new looks work.
	if !daemon.Held(home) {
		t.Fatal("the daemon let the home go after a refused unmount")
	}
	if b, err := os.ReadFile(filepath.Join(pkg, "d/b")); err != nil || string(b) != "b\n" {
		t.Fatalf("read after a refused unmount: %q, %v", b, err)
	}
	if overlay {
		opmtest.RequireReadPath(t, mnt, pkg, "overlay")
	}
	opmOK(t, home, nil, "ls", "acme/web/site")

	// The holders gone, it unmounts.
	for _, c := range []*exec.Cmd{opener, dweller} {
		c.Process.Kill()
		c.Wait()
	}
	opmOK(t, home, nil, "umount", mnt)
	if daemon.Held(home) {
		t.Error("opm umount returned while the daemon still holds the home")
	}
}

// TestUmountLazy: opm umount --lazy detaches a busy mount at once; the open
// file reads on, and the daemon exits once it is closed.
func TestUmountLazy(t *testing.T) {
	home := t.TempDir()
	src := opmtest.WriteTree(t, map[string]string{"a": "lazy\n"})
	opmOK(t, home, nil, "push", "acme/web/site:v1", src)
	mnt := mountDaemon(t, home)
	f, err := os.Open(filepath.Join(mnt, "acme/web/site/v1/a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := opmOK(t, home, nil, "umount", "--lazy", mnt)
	if !strings.Contains(out, "detached "+mnt) {
		t.Errorf("opm umount --lazy said %q", out)
	}
	if _, ok := opmfs.MountedHome(mnt); ok {
		t.Error("still mounted after opm umount --lazy")
	}
	b := make([]byte, 16)
	if n, err := f.ReadAt(b, 0); string(b[:n]) != "lazy\n" {
		t.Errorf("read of a file open across a lazy unmount: %q, %v", b[:n], err)
	}
	f.Close()
	opmtest.Eventually(t, "the daemon to let the home go once the last file is closed", func() error {
		if daemon.Held(home) {
			return errors.New("the home is held")
		}
		return nil
	})
}

// TestUmountDeadDaemon: the mount of a daemon that was killed, overlays
// and all, is unmounted by opm umount itself.
func TestUmountDeadDaemon(t *testing.T) {
	home := t.TempDir()
	src := opmtest.WriteTree(t, map[string]string{"a": "a\n"})
	opmOK(t, home, nil, "push", "acme/web/site:v1", src)
	mnt := mountDaemon(t, home)
	if mountStatus(t, mnt).Overlay.Off == "" {
		opmtest.RequireReadPath(t, mnt, filepath.Join(mnt, "acme/web/site/v1"), "overlay")
	}
	pid := mountStatus(t, mnt).PID
	p, _ := os.FindProcess(pid)
	p.Kill()
	opmtest.Eventually(t, "the killed daemon to let the home go", func() error {
		if daemon.Held(home) {
			return fmt.Errorf("pid %d holds %s", pid, home)
		}
		return nil
	})
	out := opmOK(t, home, nil, "umount", mnt)
	if !strings.Contains(out, "left by an opm daemon that is gone") {
		t.Errorf("opm umount said %q", out)
	}
	if _, ok := opmfs.MountedHome(mnt); ok {
		t.Error("still mounted after opm umount")
	}
	if all, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(all), mnt+"/") {
		t.Errorf("mounts left below %s", mnt)
	}
}
