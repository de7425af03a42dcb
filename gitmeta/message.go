package gitmeta

import (
	"fmt"
	"strings"

	"github.com/openpm/opm"
)

// Message is a commit message: a one-line subject saying what happened, an
// optional body, and trailers carrying the facts (Opm-Digest: sha256:…).
type Message struct {
	Subject  string
	Body     string
	Trailers []Trailer
}

// Trailer is one "Key: value" line of a message's last paragraph.
type Trailer struct {
	Key, Value string
}

// String formats the message as git stores it:
// "subject\n\nbody\n\nKey: value\n…", leaving out an empty body or trailer
// block.
func (m Message) String() string {
	var b strings.Builder
	b.WriteString(m.Subject)
	b.WriteString("\n")
	if m.Body != "" {
		b.WriteString("\n")
		b.WriteString(m.Body)
		b.WriteString("\n")
	}
	if len(m.Trailers) > 0 {
		b.WriteString("\n")
		for _, t := range m.Trailers {
			fmt.Fprintf(&b, "%s: %s\n", t.Key, t.Value)
		}
	}
	return b.String()
}

// Trailer returns the value of the first trailer called key (compared
// case-insensitively, as git does) and whether there is one.
func (m Message) Trailer(key string) (string, bool) {
	for _, t := range m.Trailers {
		if strings.EqualFold(t.Key, key) {
			return t.Value, true
		}
	}
	return "", false
}

// ParseMessage parses a commit message: the first line is the subject; the
// last paragraph is the trailers if every line of it is "Key: value"; what
// lies between is the body. It reverses String.
func ParseMessage(s string) Message {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	subject, rest, _ := strings.Cut(s, "\n")
	m := Message{Subject: strings.TrimSpace(subject)}
	rest = strings.Trim(rest, "\n")
	if rest == "" {
		return m
	}
	last := rest
	if i := strings.LastIndex(rest, "\n\n"); i >= 0 {
		last = rest[i+2:]
	}
	if trailers, ok := parseTrailers(last); ok {
		m.Trailers = trailers
		rest = strings.TrimRight(rest[:len(rest)-len(last)], "\n")
	}
	m.Body = rest
	return m
}

func parseTrailers(para string) ([]Trailer, bool) {
	var out []Trailer
	for _, line := range strings.Split(para, "\n") {
		key, value, ok := strings.Cut(line, ": ")
		if !ok || !validTrailerKey(key) {
			return nil, false
		}
		out = append(out, Trailer{Key: key, Value: value})
	}
	return out, true
}

func validTrailerKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validate checks that String and ParseMessage round-trip the message.
func (m Message) validate() error {
	bad := func(what string) error {
		return opm.Errorf(opm.ErrInvalid, "commit message %q: %s", m.Subject, what)
	}
	if strings.TrimSpace(m.Subject) == "" || m.Subject != strings.TrimSpace(m.Subject) || strings.Contains(m.Subject, "\n") {
		return bad("the subject must be one non-empty line without surrounding space")
	}
	if m.Body != strings.Trim(m.Body, "\n") || strings.Contains(m.Body, "\r") {
		return bad("the body must not begin or end with a newline or hold a carriage return")
	}
	if len(m.Trailers) == 0 && m.Body != "" {
		last := m.Body[strings.LastIndex(m.Body, "\n\n")+1:]
		if _, ok := parseTrailers(strings.TrimLeft(last, "\n")); ok {
			return bad("the body's last paragraph would read back as trailers")
		}
	}
	for _, t := range m.Trailers {
		if !validTrailerKey(t.Key) || strings.ContainsAny(t.Value, "\r\n") {
			return bad(fmt.Sprintf("trailer %q: want a key of letters, digits and '-' and a one-line value", t.Key))
		}
	}
	return nil
}
