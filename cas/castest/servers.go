package castest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/openpm/opm/internal/opmtest"
)

// A Server is a real storage server run by a test as a child process on
// loopback: SeaweedFS (S3), fake-gcs-server (Google Cloud Storage) or
// Azurite (Azure Blob Storage). scripts/storage-servers.sh installs them
// into bin/servers; a test that finds none is skipped, or fails when
// OPM_TEST_REQUIRE_FUSE=1 (as in CI).
type Server struct {
	// Kind is the bucket URL scheme the server speaks: s3, gs or azblob.
	Kind string
	// Addr is host:port of its bucket API.
	Addr string

	env    map[string]string
	create func(ctx context.Context, name string) error
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	killed atomic.Bool
	n      atomic.Int64 // buckets made, for unique names
}

// The well-known development account every Azure Storage emulator takes.
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Static S3 credentials of the SeaweedFS identities the tests use: one
// that may do anything (in the environment), one that may only read (the
// profile S3ReaderProfile), and S3WrongProfile, whose secret is wrong.
const (
	s3Key           = "opm-test"
	s3Secret        = "opm-test-secret"
	s3ReaderKey     = "opm-reader"
	s3ReaderSecret  = "opm-reader-secret"
	S3ReaderProfile = "reader"
	S3WrongProfile  = "wrong"
)

// StartServer starts a server of the given kind ("s3", "gs" or "azblob")
// for the duration of the test. It does not change the test's environment:
// see SetEnv and Env.
func StartServer(t testing.TB, kind string) *Server {
	t.Helper()
	switch kind {
	case "s3":
		return StartSeaweedFS(t)
	case "gs":
		return StartFakeGCS(t)
	case "azblob":
		return StartAzurite(t)
	}
	t.Fatalf("no test server for bucket kind %q", kind)
	return nil
}

// StartSeaweedFS starts `weed server -s3` (master, volume, filer and S3
// gateway in one process) with a static identity.
func StartSeaweedFS(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "weed")
	dir := t.TempDir()
	ids := filepath.Join(dir, "identities.json")
	if err := os.WriteFile(ids, fmt.Appendf(nil, `{"identities":[
		{"name":"opm","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Admin","Read","Write","List","Tagging"]},
		{"name":"reader","credentials":[{"accessKey":%q,"secretKey":%q}],"actions":["Read"]}]}`,
		s3Key, s3Secret, s3ReaderKey, s3ReaderSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	// Profiles for URLs with ?profile=: a read-only identity, and keys the
	// server does not know.
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, fmt.Appendf(nil, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n[%s]\naws_access_key_id = %s\naws_secret_access_key = wrong\n",
		S3ReaderProfile, s3ReaderKey, s3ReaderSecret, S3WrongProfile, s3Key), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each of its servers listens on a port and on that port + 10000 (gRPC)
	// unless told otherwise: every one is named.
	p := freePorts(t, 8)
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{Kind: "s3", Addr: "127.0.0.1:" + strconv.Itoa(p[0]), env: map[string]string{
		"AWS_ACCESS_KEY_ID":           s3Key,
		"AWS_SECRET_ACCESS_KEY":       s3Secret,
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "none"),
		"AWS_SHARED_CREDENTIALS_FILE": creds,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}}
	s.create = s.createS3
	s.start(t, dir, bin, "server", "-dir="+data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-volume.max=200", "-master.volumeSizeLimitMB=256", "-master.telemetry=false",
		"-s3", "-s3.config="+ids,
		"-s3.port="+strconv.Itoa(p[0]), "-s3.port.grpc="+strconv.Itoa(p[1]),
		"-master.port="+strconv.Itoa(p[2]), "-master.port.grpc="+strconv.Itoa(p[3]),
		"-volume.port="+strconv.Itoa(p[4]), "-volume.port.grpc="+strconv.Itoa(p[5]),
		"-filer.port="+strconv.Itoa(p[6]), "-filer.port.grpc="+strconv.Itoa(p[7]),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-filer.localSocket="+filepath.Join(dir, "filer.sock"),
		"-s3.localSocket="+filepath.Join(dir, "s3.sock"))
	// The gateway answers before the master has volumes to write to: wait
	// for a bucket that can be written.
	s.waitReady(t, func(ctx context.Context) error {
		name := fmt.Sprintf("ready%d", time.Now().UnixNano())
		if err := s.createS3(ctx, name); err != nil {
			return err
		}
		_, err := s.s3Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &name, Key: aws.String("probe"), Body: strings.NewReader("x")})
		return err
	})
	return s
}

func (s *Server) s3Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://" + s.Addr),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3Key, s3Secret, ""),
	})
}

func (s *Server) createS3(ctx context.Context, name string) error {
	_, err := s.s3Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name})
	return err
}

// StartFakeGCS starts fake-gcs-server over plain HTTP, in memory; clients
// reach it through STORAGE_EMULATOR_HOST.
func StartFakeGCS(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "fake-gcs-server")
	dir := t.TempDir()
	port := strconv.Itoa(freePorts(t, 1)[0])
	s := &Server{Kind: "gs", Addr: "127.0.0.1:" + port, env: map[string]string{
		"STORAGE_EMULATOR_HOST": "127.0.0.1:" + port,
	}}
	s.create = s.createGCS
	s.start(t, dir, bin, "-scheme", "http", "-host", "127.0.0.1", "-port", port,
		"-public-host", s.Addr, "-backend", "memory", "-log-level", "error")
	s.waitReady(t, func(ctx context.Context) error { return s.get(ctx, "/storage/v1/b?project=opm") })
	return s
}

func (s *Server) createGCS(ctx context.Context, name string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+s.Addr+"/storage/v1/b?project=opm",
		strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return do(req)
}

// StartAzurite starts Azurite's blob service; clients reach it with the
// development account's key and an azblob:// URL naming its address.
func StartAzurite(t testing.TB) *Server {
	t.Helper()
	bin := serverBinary(t, "azurite-blob")
	dir := t.TempDir()
	port := strconv.Itoa(freePorts(t, 1)[0])
	s := &Server{Kind: "azblob", Addr: "127.0.0.1:" + port, env: map[string]string{
		"AZURE_STORAGE_ACCOUNT":              azuriteAccount,
		"AZURE_STORAGE_KEY":                  azuriteKey,
		"AZURE_STORAGE_SAS_TOKEN":            "",
		"AZURE_STORAGE_CONNECTION_STRING":    "",
		"AZURE_STORAGEBLOB_CONNECTIONSTRING": "",
	}}
	s.create = s.createAzure
	data := filepath.Join(dir, "data")
	s.start(t, dir, bin, "--blobHost", "127.0.0.1", "--blobPort", port, "--location", data,
		"--silent", "--skipApiVersionCheck", "--disableProductStyleUrl")
	s.waitReady(t, func(ctx context.Context) error {
		return s.createAzure(ctx, fmt.Sprintf("ready%d", time.Now().UnixNano()))
	})
	return s
}

func (s *Server) createAzure(ctx context.Context, name string) error {
	cred, err := azblob.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	if err != nil {
		return err
	}
	c, err := azblob.NewClientWithSharedKeyCredential("http://"+s.Addr+"/"+azuriteAccount, cred, nil)
	if err != nil {
		return err
	}
	_, err = c.CreateContainer(ctx, name, nil)
	return err
}

// NewBucket creates an empty bucket and returns its URL.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("opm-%d", s.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.create(ctx, name); err != nil {
		t.Fatalf("%s server: create bucket %s: %v", s.Kind, name, err)
	}
	return s.URL(name, s.Addr)
}

// URL returns the URL of the bucket name reached at addr: the server's
// Addr, or a proxy in front of it. A gs:// URL cannot name its server: a
// client reaches it through STORAGE_EMULATOR_HOST, which EnvAt sets.
func (s *Server) URL(name, addr string) string {
	switch s.Kind {
	case "s3":
		q := url.Values{
			"endpoint":       {"http://" + addr},
			"use_path_style": {"true"},
			"disable_https":  {"true"},
			"region":         {"us-east-1"},
		}
		return "s3://" + name + "?" + q.Encode()
	case "azblob":
		return "azblob://" + name + "?" + url.Values{"protocol": {"http"}, "domain": {addr}, "localemu": {"true"}}.Encode()
	}
	return "gs://" + name
}

// Env returns the environment (KEY=VALUE) a client process needs to reach
// the server: its credentials and, for gs://, its address.
func (s *Server) Env() []string { return s.EnvAt(s.Addr) }

// EnvAt is Env for a client that reaches the server at addr (a proxy).
func (s *Server) EnvAt(addr string) []string {
	var env []string
	for k, v := range s.env {
		if k == "STORAGE_EMULATOR_HOST" {
			v = addr
		}
		env = append(env, k+"="+v)
	}
	return env
}

// SetEnv sets the test's environment to reach the server (so the test must
// not run in parallel).
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Kill kills the server at once (SIGKILL), as a crash would, and waits for
// it to be gone.
func (s *Server) Kill() {
	if s.killed.Swap(true) {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func (s *Server) start(t testing.TB, dir, bin string, args ...string) {
	t.Helper()
	s.log = filepath.Join(dir, "server.log")
	out, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	s.done = make(chan struct{})
	go func() {
		s.cmd.Wait()
		out.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("%s server log (%s):\n%s", s.Kind, s.log, tail(s.log))
		}
	})
}

// waitReady calls probe until it succeeds, for up to a minute.
func (s *Server) waitReady(t testing.TB, probe func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := probe(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.done:
			t.Fatalf("%s server exited at start:\n%s", s.Kind, tail(s.log))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s server not ready after a minute: %v\n%s", s.Kind, err, tail(s.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) get(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+s.Addr+path, nil)
	if err != nil {
		return err
	}
	return do(req)
}

func do(req *http.Request) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b.Bytes()))
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// serverBinary finds a server program: in $OPM_TEST_SERVERS, in the
// module's bin/servers (scripts/storage-servers.sh), or on $PATH.
func serverBinary(t testing.TB, name string) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("OPM_TEST_SERVERS"); d != "" {
		dirs = append(dirs, d)
	}
	if root := moduleRoot(); root != "" {
		dirs = append(dirs, filepath.Join(root, "bin", "servers"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	opmtest.Unavailable(t, "%s is not installed: run scripts/storage-servers.sh (make test does)", name)
	return ""
}

var moduleRoot = sync.OnceValue(func() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			// A nested module (tools/…) is not the project's root.
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/openpm/opm\n")) {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
})

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
