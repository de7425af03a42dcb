package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Access control (docs/http.md "Access"). A request's access is what its
// credentials give: the write token push (and pull), the read token pull,
// none at all pull where reads are open. Credentials are one of the
// server's tokens, sent as a bearer token or as the password of Basic
// authentication, or a bearer token this server issued at tokenPath: the
// token flow of the distribution spec, which Docker Hub, ghcr.io and zot
// speak and which skopeo, docker and podman need. A client that is refused
// under /v2/ is told where to get a token:
//
//	WWW-Authenticate: Bearer realm="http://host/_opm/token",service="host",scope="repository:ns/p/r:pull,push"
//
// and GETs one there with its credentials as Basic authentication (or, as
// an OAuth2 client, POSTs them as a password grant); it comes back with
// `Authorization: Bearer <token>`. Wrong credentials are refused at the
// token endpoint and at GET /v2/, so a login with a wrong token fails in
// every client.

type access int

const (
	accessNone access = iota
	accessPull
	accessPush // pull, push and delete
)

func (a access) String() string {
	return [...]string{"none", "pull", "push"}[a]
}

// basicChallenge is the challenge outside /v2/ (a browser prompts for it)
// and of the token endpoint itself.
const basicChallenge = `Basic realm="opm", charset="UTF-8"`

// tokenPath is the token endpoint. Names never begin with "_", so it
// cannot clash with a namespace's pages.
const tokenPath = "/_opm/token"

// tokenTTL is how long an issued token is good for; a client whose token
// expired is refused with the challenge again and fetches another.
const tokenTTL = 5 * time.Minute

// issuer signs and checks the tokens a server issues: an access and an
// expiry under an HMAC with a key of the server's process, so they are
// worth nothing to another server or after a restart (the client fetches
// another).
type issuer struct{ key []byte }

func newIssuer() issuer {
	key := make([]byte, 32)
	rand.Read(key)
	return issuer{key: key}
}

// issue returns a token for a until expires.
func (is issuer) issue(a access, expires time.Time) string {
	payload := make([]byte, 9)
	payload[0] = byte(a)
	binary.BigEndian.PutUint64(payload[1:], uint64(expires.Unix()))
	return "opm." + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(is.mac(payload))
}

// check returns the access of a token issue made, or false if it did not
// make it or it has expired.
func (is issuer) check(tok string, now time.Time) (access, bool) {
	rest, ok := strings.CutPrefix(tok, "opm.")
	if !ok {
		return accessNone, false
	}
	p64, m64, ok := strings.Cut(rest, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(m64)
	if !ok || err1 != nil || err2 != nil || len(payload) != 9 || !hmac.Equal(mac, is.mac(payload)) {
		return accessNone, false
	}
	a := access(payload[0])
	if a > accessPush || now.Unix() >= int64(binary.BigEndian.Uint64(payload[1:])) {
		return accessNone, false
	}
	return a, true
}

func (is issuer) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, is.key)
	h.Write(payload)
	return h.Sum(nil)
}

// credentials returns the access the credentials of r give (a request
// without any: anonymous, pull where reads are open), and false when r
// carries credentials that are wrong: then it gets nothing, not even the
// anonymous reads, so that a login with them fails.
func (s *Server) credentials(r *http.Request) (access, bool) {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return s.anonymous(), true
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if a, ok := s.tokens.check(cred, time.Now()); ok {
			return a, true
		}
		return s.tokenAccess(cred)
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return accessNone, false
		}
		_, pass, _ := strings.Cut(string(raw), ":")
		return s.tokenAccess(pass)
	}
	return accessNone, false
}

// anonymous is the access of a request without credentials.
func (s *Server) anonymous() access {
	if s.opts.ReadToken == "" {
		return accessPull
	}
	return accessNone
}

// tokenAccess is the access one of the server's own tokens gives; false if
// tok is none of them.
func (s *Server) tokenAccess(tok string) (access, bool) {
	switch {
	case equalToken(tok, s.opts.Token):
		return accessPush, true
	case equalToken(tok, s.opts.ReadToken):
		return accessPull, true
	}
	return accessNone, false
}

func equalToken(got, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// authorize reports whether r may go on; if not, it has answered 401.
// Writes need push; reads pull; GET /v2/, the check clients log in with,
// needs credentials that are right — and some at all, where the server has
// anything to log in to (its writes, or closed reads).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	got, ok := s.credentials(r)
	need := accessPull
	if isWrite(r.Method) {
		need = accessPush
	}
	switch {
	case !ok:
		s.unauthorized(w, r, need, "the credentials are not valid for this server: the password is its token (opm serve --token-file, --read-token-file)")
	case r.URL.Path == "/v2/" && r.Header.Get("Authorization") == "" && (s.opts.Token != "" || s.opts.ReadToken != ""):
		s.unauthorized(w, r, need, "log in with the server's token as the password")
	case got < need && need == accessPush:
		s.unauthorized(w, r, need, "writes need the server's token: Authorization: Bearer <token> (or Basic with the token as password)")
	case got < need:
		s.unauthorized(w, r, need, "this server needs a token to read")
	default:
		return true
	}
	return false
}

// unauthorized answers 401 with a challenge: under /v2/ the token flow's,
// naming the scope the request needs; elsewhere (web pages, the listing
// API) Basic, which a browser prompts for.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, need access, msg string) {
	if strings.HasPrefix(r.URL.Path, "/v2/") {
		c := `Bearer realm="` + baseURL(r) + tokenPath + `",service="` + r.Host + `"`
		if name := repoOfPath(r.URL.Path); name != "" {
			actions := "pull"
			if need == accessPush {
				actions = "pull,push"
			}
			c += `,scope="repository:` + name + ":" + actions + `"`
		}
		w.Header().Set("WWW-Authenticate", c)
	} else {
		w.Header().Set("WWW-Authenticate", basicChallenge)
	}
	writeError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}

// baseURL is the scheme and host the client reached the server at.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// repoOfPath is the repository name of an OCI route, "" for none.
func repoOfPath(p string) string {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return ""
	}
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, kind); i > 0 {
			if name := rest[:i]; !strings.ContainsAny(name, "\"\\ ") {
				return name
			}
		}
	}
	return ""
}

// serveToken is the token endpoint: GET with the credentials as Basic
// authentication (or none, for anonymous reads), or POST of an OAuth2
// password grant (username, password as form fields). The token grants
// what the credentials give and the scopes ask for, at most; without a
// scope (a login), all the credentials give. Wrong credentials: 401.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	var got access
	var ok bool
	if err := r.ParseForm(); err != nil {
		writeError(w, r, http.StatusBadRequest, "UNSUPPORTED", "the token request's form does not parse: "+err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		got, ok = s.credentials(r)
	case http.MethodPost:
		if r.PostForm.Get("grant_type") != "password" {
			writeError(w, r, http.StatusBadRequest, "UNSUPPORTED", "grant_type must be password (the password is the server's token)")
			return
		}
		got, ok = s.tokenAccess(r.PostForm.Get("password"))
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeError(w, r, http.StatusMethodNotAllowed, "UNSUPPORTED", "the token endpoint takes GET (Basic authentication) or POST (a password grant)")
		return
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", basicChallenge)
		writeError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "the credentials are not valid for this server: the password is its token")
		return
	}
	if got == accessNone {
		w.Header().Set("WWW-Authenticate", basicChallenge)
		writeError(w, r, http.StatusUnauthorized, "UNAUTHORIZED", "this server needs a token to read: log in with it as the password")
		return
	}
	if scopes := r.Form["scope"]; len(scopes) > 0 {
		got = min(got, asked(scopes))
	}
	now := time.Now()
	tok := s.tokens.issue(got, now.Add(tokenTTL))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(tokenTTL / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}

// asked is the most the scopes ask for ("repository:NAME:pull,push", each
// possibly several, space-separated): push for push, delete or *.
func asked(scopes []string) access {
	a := accessNone
	for _, s := range scopes {
		for _, one := range strings.Fields(s) {
			i := strings.LastIndex(one, ":")
			if i < 0 {
				continue
			}
			for _, act := range strings.Split(one[i+1:], ",") {
				switch act {
				case "pull":
					a = max(a, accessPull)
				case "push", "delete", "*":
					a = accessPush
				}
			}
		}
	}
	return a
}
