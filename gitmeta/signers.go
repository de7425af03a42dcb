package gitmeta

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/openpm/opm"
)

// Allowed signers (docs/design.md §3): who may sign the registry's commits,
// in git's allowed_signers format (ssh-keygen(1), ALLOWED SIGNERS), the
// file git reads through gpg.ssh.allowedSignersFile:
//
//	# principals  [options]                    key
//	ci@example.org namespaces="git" ssh-ed25519 AAAAC3Nza… ci key
//	alice@example.org valid-before="20271231Z" ssh-ed25519 AAAAC3Nza…
//
// Options: namespaces="a,b" (the key signs only in those; opm asks for
// "git"), valid-after="TIME", valid-before="TIME" (YYYYMMDD[HHMM[SS]], read
// as UTC: end them with Z, as ssh-keygen reads a time without it in the
// local zone). cert-authority is not taken: opm verifies keys, not
// certificates.

// AllowedSigner is one line of an allowed signers file.
type AllowedSigner struct {
	Principals  []string
	Key         ssh.PublicKey
	Namespaces  []string  // nil: every namespace
	ValidAfter  time.Time // zero: no bound
	ValidBefore time.Time // zero: no bound
	Line        int
}

// Fingerprint is the key's SHA256 fingerprint (SHA256:…), as ssh-keygen -l
// prints it.
func (s AllowedSigner) Fingerprint() string { return ssh.FingerprintSHA256(s.Key) }

// AllowedSigners is a parsed allowed signers file.
type AllowedSigners []AllowedSigner

// MaxSignersSize bounds an allowed signers file, as every metadata file
// but a manifest (layout.MaxMetaSize).
const MaxSignersSize = 64 << 10

// ParseAllowedSigners parses an allowed signers file. A line that does not
// parse fails it, naming the line.
func ParseAllowedSigners(b []byte) (AllowedSigners, error) {
	if len(b) > MaxSignersSize {
		return nil, opm.Errorf(opm.ErrInvalid, "allowed signers: %d bytes, over the %d-byte limit", len(b), MaxSignersSize)
	}
	if !utf8.Valid(b) {
		return nil, opm.Errorf(opm.ErrInvalid, "allowed signers: not UTF-8")
	}
	var out AllowedSigners
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSignerLine(line)
		if err != nil {
			return nil, opm.Errorf(opm.ErrInvalid, "allowed signers line %d: %v", n+1, err)
		}
		s.Line = n + 1
		out = append(out, s)
	}
	return out, nil
}

func parseSignerLine(line string) (AllowedSigner, error) {
	var s AllowedSigner
	principals, rest, err := firstField(line)
	if err != nil {
		return s, err
	}
	if principals == "" || rest == "" {
		return s, fmt.Errorf("want principals, then options if any, then a key")
	}
	s.Principals = strings.Split(principals, ",")
	if slices.Contains(s.Principals, "") {
		return s, fmt.Errorf("an empty principal in %q", principals)
	}
	// The rest is an authorized_keys line: [options] keytype key [comment].
	key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(rest))
	if err != nil {
		return s, fmt.Errorf("no public key: %v", err)
	}
	s.Key = key
	for _, o := range options {
		name, value, hasValue := strings.Cut(o, "=")
		value = strings.Trim(value, `"`)
		switch name = strings.ToLower(name); {
		case name == "namespaces" && hasValue:
			s.Namespaces = strings.Split(value, ",")
		case (name == "valid-after" || name == "valid-before") && hasValue:
			t, err := parseSignerTime(value)
			if err != nil {
				return s, fmt.Errorf("%s: %v", name, err)
			}
			if name == "valid-after" {
				s.ValidAfter = t
			} else {
				s.ValidBefore = t
			}
		case name == "cert-authority":
			return s, fmt.Errorf("cert-authority is not taken: name the keys themselves")
		default:
			return s, fmt.Errorf("unknown option %q (namespaces, valid-after, valid-before)", o)
		}
	}
	return s, nil
}

// firstField splits off the first whitespace-separated field, which may be
// double-quoted.
func firstField(line string) (field, rest string, err error) {
	if strings.HasPrefix(line, `"`) {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quote")
		}
		return line[1 : end+1], strings.TrimSpace(line[end+2:]), nil
	}
	i := strings.IndexAny(line, " \t")
	if i < 0 {
		return line, "", nil
	}
	return line[:i], strings.TrimSpace(line[i:]), nil
}

// parseSignerTime reads YYYYMMDD[HHMM[SS]][Z] as UTC.
func parseSignerTime(v string) (time.Time, error) {
	v = strings.TrimSuffix(v, "Z")
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(v) == len(layout) {
			if t, err := time.Parse(layout, v); err == nil {
				return t, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%q: want YYYYMMDD[HHMM[SS]]Z", v)
}

// Allows reports whether key may sign a git commit made at t, and the line
// that says so.
func (a AllowedSigners) Allows(key ssh.PublicKey, t time.Time) (AllowedSigner, error) {
	wire := key.Marshal()
	var why error = fmt.Errorf("not an allowed signer")
	for _, s := range a {
		if !bytes.Equal(s.Key.Marshal(), wire) {
			continue
		}
		switch {
		case s.Namespaces != nil && !slices.Contains(s.Namespaces, "git"):
			why = fmt.Errorf("allowed (line %d) only for namespaces %s, not git", s.Line, strings.Join(s.Namespaces, ","))
		case !s.ValidAfter.IsZero() && t.Before(s.ValidAfter):
			why = fmt.Errorf("not valid before %s (line %d)", s.ValidAfter.UTC().Format(time.RFC3339), s.Line)
		case !s.ValidBefore.IsZero() && !t.Before(s.ValidBefore):
			why = fmt.Errorf("expired at %s (line %d)", s.ValidBefore.UTC().Format(time.RFC3339), s.Line)
		default:
			return s, nil
		}
	}
	return AllowedSigner{}, why
}

// Find returns the line of the key whose fingerprint, or whose public key
// in authorized_keys form, is id.
func (a AllowedSigners) Find(id string) (AllowedSigner, bool) {
	fp, err := KeyFingerprint(id)
	if err != nil {
		return AllowedSigner{}, false
	}
	for _, s := range a {
		if s.Fingerprint() == fp {
			return s, true
		}
	}
	return AllowedSigner{}, false
}

// KeyFingerprint reads a key given as its fingerprint (SHA256:…) or as a
// public key (ssh-ed25519 AAAA… [comment], an authorized_keys line) and
// returns its fingerprint.
func KeyFingerprint(id string) (string, error) {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "SHA256:") {
		if len(id) != len("SHA256:")+43 || strings.ContainsAny(id, " \t") {
			return "", opm.Errorf(opm.ErrInvalid, "key %q: a fingerprint is SHA256: and 43 base64 characters, as ssh-keygen -lf prints it", id)
		}
		return id, nil
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id))
	if err != nil {
		return "", opm.Errorf(opm.ErrInvalid, "key %q: neither a fingerprint (SHA256:…) nor a public key (ssh-ed25519 AAAA…)", opm.Printable(short(id, 40)))
	}
	return ssh.FingerprintSHA256(key), nil
}

func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// MaySign checks that signer may sign a commit made at when under the
// allowed signers file b, and returns its line. A commit that changes the
// file is checked against the file before the change; the first one, which
// adds it, against the file it adds.
func MaySign(b []byte, signer CommitSigner, when time.Time) (AllowedSigner, error) {
	a, err := ParseAllowedSigners(b)
	if err != nil {
		return AllowedSigner{}, err
	}
	if signer == nil {
		return AllowedSigner{}, opm.Errorf(opm.ErrUntrusted, "no signing key is configured")
	}
	key, err := signer.PublicKey()
	if err != nil {
		return AllowedSigner{}, err
	}
	s, err := a.Allows(key, when)
	if err != nil {
		return AllowedSigner{}, opm.Errorf(opm.ErrUntrusted, "the signing key %s is %v", ssh.FingerprintSHA256(key), err)
	}
	return s, nil
}
