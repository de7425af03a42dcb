package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openpm/opm/registry"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "opm test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	r, err := registry.Open(context.Background(), filepath.Join(dir, "home"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cert, key := selfSigned(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	var log bytes.Buffer
	go func() {
		done <- serveHTTP(ctx, r, serveOptions{Addr: "127.0.0.1:0", CertFile: cert, KeyFile: key, Token: "tok"}, &log, func(a string) { addrc <- a })
	}()
	addr := <-addrc
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := c.Get("https://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	// The login check challenges, pointing at the token endpoint over TLS.
	if c := res.Header.Get("WWW-Authenticate"); res.StatusCode != 401 || !strings.Contains(c, `realm="https://`+addr+`/_opm/token"`) {
		t.Fatalf("GET /v2/ over TLS: %d %q", res.StatusCode, c)
	}
	res, err = c.Get("https://" + addr + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("GET /v2/_catalog over TLS: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("DELETE", "https://"+addr+"/v2/a/b/c/manifests/v1", nil)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("DELETE without a token: %d", res.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "https://"+addr) {
		t.Errorf("log: %q", log.String())
	}
}

func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, args := range [][]string{
		{"serve", "--tls-cert", "c.pem"},
		{"serve", "--token-file", filepath.Join(dir, "missing")},
		{"serve", "--token-file", empty},
		{"serve", "extra"},
	} {
		var out, errw bytes.Buffer
		app := newApp(&out, &errw)
		err := app.RunContext(context.Background(), append([]string{"opm", "--home", filepath.Join(dir, "home")}, args...))
		if code := exitCode(err); code != 2 {
			t.Errorf("opm %v: exit %d (%v), want 2 (usage)", args, code, err)
		}
	}
}
