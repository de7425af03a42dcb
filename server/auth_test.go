package server

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestTokenFlow: the distribution token flow, as Docker Hub speaks it and
// skopeo, docker and podman need. GET /v2/ challenges a client without
// credentials, naming the token endpoint; the endpoint gives a token for
// the right credentials — at most what they give and the scope asks — and
// refuses wrong ones, so a login with a wrong token fails; anonymous
// clients get a pull token where reads are open. Tokens forged, tampered
// with or expired are refused. (GET /v2/ used to answer 200 to anyone, so
// clients never sent credentials and any login "succeeded".)
func TestTokenFlow(t *testing.T) {
	e := newEnv(t, Options{})
	res := e.doAuth("", "GET", "/v2/", nil)
	expect(t, res, 401, "UNAUTHORIZED")
	challenge := res.Header.Get("WWW-Authenticate")
	m := regexp.MustCompile(`^Bearer realm="([^"]+)",service="([^"]+)"$`).FindStringSubmatch(challenge)
	if m == nil || m[1] != e.url+tokenPath {
		t.Fatalf("GET /v2/ challenge: %q; want Bearer realm=%q", challenge, e.url+tokenPath)
	}
	service := m[2]
	res = e.doAuth("", "PUT", "/v2/acme/web/site/manifests/v1", []byte("{}"))
	expect(t, res, 401, "UNAUTHORIZED")
	if c := res.Header.Get("WWW-Authenticate"); !strings.HasSuffix(c, `,scope="repository:acme/web/site:pull,push"`) {
		t.Errorf("PUT challenge: %q; want the scope it needs", c)
	}

	token := func(auth string, scope ...string) (string, int) {
		t.Helper()
		q := url.Values{"service": {service}, "scope": scope}
		res := e.doAuth(auth, "GET", tokenPath+"?"+q.Encode(), nil)
		var body struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if res.StatusCode == 200 {
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.AccessToken == "" || body.Token != body.AccessToken || body.ExpiresIn <= 0 {
				t.Fatalf("token answer: %v %+v", err, body)
			}
		}
		res.Body.Close()
		return body.AccessToken, res.StatusCode
	}
	basic := func(pass string) string { return "Basic " + base64Encode("someone:"+pass) }
	push := "repository:acme/web/site:pull,push"
	pull := "repository:acme/web/site:pull"

	// Wrong credentials: no token, and GET /v2/ refuses them.
	if _, code := token(basic("wrong"), push); code != 401 {
		t.Errorf("token for a wrong password: %d, want 401", code)
	}
	expect(t, e.doAuth(basic("wrong"), "GET", "/v2/", nil), 401, "UNAUTHORIZED")

	// Right credentials, asking for push: a token that writes.
	writer, code := token(basic(testToken), push)
	if code != 200 {
		t.Fatalf("token for the right password: %d", code)
	}
	blob := []byte("by token")
	d := digest.FromBytes(blob)
	expect(t, e.doAuth("Bearer "+writer, "GET", "/v2/", nil), 200, "")
	expect(t, e.doAuth("Bearer "+writer, "POST", "/v2/acme/web/site/blobs/uploads/?digest="+d.String(), blob), 201, "")

	// Asking for pull only: a token that only reads, whatever the password.
	reader, _ := token(basic(testToken), pull)
	expect(t, e.doAuth("Bearer "+reader, "GET", "/v2/acme/web/site/blobs/"+d.String(), nil), 200, "")
	expect(t, e.doAuth("Bearer "+reader, "DELETE", "/v2/acme/web/site/blobs/"+d.String(), nil), 401, "UNAUTHORIZED")

	// Anonymous, reads open: a pull token, even when push is asked.
	anon, code := token("", push)
	if code != 200 {
		t.Fatalf("anonymous token: %d", code)
	}
	expect(t, e.doAuth("Bearer "+anon, "GET", "/v2/acme/web/site/blobs/"+d.String(), nil), 200, "")
	expect(t, e.doAuth("Bearer "+anon, "DELETE", "/v2/acme/web/site/blobs/"+d.String(), nil), 401, "UNAUTHORIZED")

	// An OAuth2 password grant, as containerd sends it.
	form := url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {testToken}, "scope": {push}, "service": {service}}
	res = e.doAuth("", "POST", tokenPath, []byte(form.Encode()), "Content-Type: application/x-www-form-urlencoded")
	var grant struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(res.Body).Decode(&grant)
	res.Body.Close()
	if res.StatusCode != 200 || grant.AccessToken == "" {
		t.Fatalf("password grant: %d %+v", res.StatusCode, grant)
	}
	form.Set("password", "wrong")
	expect(t, e.doAuth("", "POST", tokenPath, []byte(form.Encode()), "Content-Type: application/x-www-form-urlencoded"), 401, "UNAUTHORIZED")

	// Forged, tampered with, expired, another server's: refused outright.
	other := newIssuer()
	for name, bad := range map[string]string{
		"tampered":       writer[:len(writer)-2] + "AA",
		"expired":        e.srv.tokens.issue(accessPush, time.Now().Add(-time.Second)),
		"another server": other.issue(accessPush, time.Now().Add(time.Hour)),
		"upgraded":       upgraded(t, reader),
	} {
		expect(t, e.doAuth("Bearer "+bad, "GET", "/v2/acme/web/site/blobs/"+d.String(), nil), 401, "UNAUTHORIZED")
		if bad == writer {
			t.Errorf("%s: the same token", name)
		}
	}

	// Reads closed: no anonymous token; the read token gets a pull token.
	e2 := newEnv(t, Options{ReadToken: "reader"})
	if _, code := token2(t, e2, "", pull); code != 401 {
		t.Errorf("anonymous token with reads closed: %d, want 401", code)
	}
	r2, code := token2(t, e2, basic("reader"), push)
	if code != 200 {
		t.Fatalf("read token's token: %d", code)
	}
	expect(t, e2.doAuth("Bearer "+r2, "GET", "/v2/acme/web/site/tags/list", nil), 200, "")
	expect(t, e2.doAuth("Bearer "+r2, "DELETE", "/v2/acme/web/site/manifests/v1", nil), 401, "UNAUTHORIZED")
}

// upgraded is tok with its access made push and its MAC kept.
func upgraded(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(parts) != 3 {
		t.Fatalf("token %q: %v", tok, err)
	}
	payload[0] = byte(accessPush)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

func token2(t *testing.T, e *env, auth, scope string) (string, int) {
	t.Helper()
	res := e.doAuth(auth, "GET", tokenPath+"?"+url.Values{"scope": {scope}}.Encode(), nil)
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(res.Body).Decode(&body)
	return body.AccessToken, res.StatusCode
}
