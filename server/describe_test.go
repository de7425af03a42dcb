package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDescribe: a namespace's, project's or repository's description and
// labels are set through the listing API (PUT, with the write token), one
// commit each, checked as every description file is, and shown by the
// listing and the pages; {} removes them. (There was no way to set one.)
func TestDescribe(t *testing.T) {
	e := newEnv(t, Options{})
	e.pushPackage("acme/web/site:v1", map[string]string{"a": "a"})
	before := e.commits()
	desc := []byte(`{"description":"Acme's web packages","labels":{"team":"web"}}`)
	expect(t, e.doAuth("", "PUT", "/namespaces/acme", desc), 401, "UNAUTHORIZED")
	for _, c := range []struct {
		path, body string
		status     int
		code, msg  string
	}{
		{"/namespaces/acme", `{"owner":"x"}`, 400, "UNSUPPORTED", `is not one of a namespace's`},
		{"/namespaces/acme", `{"description":"a\u001b[2Jb"}`, 400, "UNSUPPORTED", "control character"},
		{"/namespaces/acme", `[1]`, 400, "UNSUPPORTED", "not one JSON object"},
		{"/namespaces/acme", `{"description":"` + strings.Repeat("x", 70000) + `"}`, 400, "UNSUPPORTED", "over the 65536-byte limit"},
		{"/namespaces/acmee", `{}`, 404, "NAME_UNKNOWN", "acmee: no such namespace; did you mean acme?"},
		{"/namespaces/acme/projects/web/repositories/site/tags/v1", `{}`, 400, "NAME_INVALID", "PUT a description to a namespace"},
	} {
		b := expect(t, e.do("PUT", c.path, []byte(c.body)), c.status, c.code)
		if !strings.Contains(string(b), c.msg) {
			t.Errorf("PUT %s %.40s: %s; want %q", c.path, c.body, b, c.msg)
		}
	}
	if n := e.commits() - before; n != 0 {
		t.Fatalf("refused PUTs made %d commits", n)
	}

	b := expect(t, e.do("PUT", "/namespaces/acme", desc), 200, "")
	var n struct {
		Description string
		Labels      map[string]any
	}
	if err := json.Unmarshal(b, &n); err != nil || n.Description != "Acme's web packages" || n.Labels["team"] != "web" {
		t.Fatalf("PUT answer: %v %s", err, b)
	}
	expect(t, e.do("PUT", "/namespaces/acme", desc), 200, "") // the same again: no commit
	expect(t, e.do("PUT", "/namespaces/acme/projects/web/repositories/site",
		[]byte(`{"description":"the site","documentation":"https://docs.example.org","contentType":"website"}`)), 200, "")
	if n := e.commits() - before; n != 2 {
		t.Errorf("%d commits for two descriptions, want 2", n)
	}
	if list := string(expect(t, e.do("GET", "/namespaces", nil), 200, "")); !strings.Contains(list, "Acme's web packages") {
		t.Errorf("the listing does not show the description: %s", list)
	}
	if page := string(expect(t, e.do("GET", "/", nil), 200, "")); !strings.Contains(page, "Acme&#39;s web packages") || !strings.Contains(page, "team: web") {
		t.Errorf("the page does not show the description and label")
	}
	if page := string(expect(t, e.do("GET", "/acme/web/site/", nil), 200, "")); !strings.Contains(page, "the site") {
		t.Errorf("the repository page does not show its description")
	}
	expect(t, e.do("PUT", "/namespaces/acme", []byte(`{}`)), 200, "")
	if page := string(expect(t, e.do("GET", "/", nil), 200, "")); strings.Contains(page, "Acme&#39;s web packages") {
		t.Errorf("{} did not remove the description")
	}
}
