// Package layout is the one definition of how the registry's metadata is
// laid out in its git repository (branch main of <home>/meta.git, and of
// every remote): the paths of tags and manifests and what they decode to,
// walking a snapshot, the tag changes between two commits, the trailers
// that carry a commit's facts, and the selector grammar that chooses tags.
// See docs/design.md §3.
//
//	<ns>/
//	├── namespace.json                       optional: labels, description
//	└── <project>/
//	    ├── project.json                     optional
//	    └── <repo>/
//	        ├── repository.json              optional: content type, labels, icon, documentation
//	        ├── tags/
//	        │   └── <tag>.json               the manifest bytes of that tag, exactly
//	        └── manifests/
//	            └── <64 hex>.json            a manifest kept by digest (pushed with no
//	                                         tag through the OCI API); its bytes hash to its name
//
// Every other package asks this one; none spells a path of the layout
// itself.
package layout

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/openpm/opm"
)

// Directory and file names of the layout.
const (
	tagsDir      = "tags"
	manifestsDir = "manifests"
	fileSuffix   = ".json"
)

// AllowedSigners is the registry's allowed signers file, at the top of the
// tree (git's allowed_signers format): who may sign its commits
// (docs/design.md §3, "Trust").
const AllowedSigners = ".allowed_signers"

// Timestamp is the publisher's promise of freshness, at the top of the
// tree: until when its metadata is current (docs/design.md §3,
// "Freshness").
const Timestamp = ".timestamp"

// metaFiles are the optional description files of a namespace, a project and
// a repository, by depth (1, 2, 3).
var metaFiles = [4]string{"", "namespace.json", "project.json", "repository.json"}

// LevelKinds names the levels of the tree by depth: the root lists
// namespaces, a namespace projects, a project repositories, a repository
// tags.
var LevelKinds = [4]string{"namespaces", "projects", "repositories", "tags"}

// LevelNames names one node of each depth (1, 2, 3).
var LevelNames = [4]string{"", "namespace", "project", "repository"}

// TagPath is the file of a tag: ns/project/repo/tags/<tag>.json.
func TagPath(r opm.Repository, tag string) string {
	return TagsDir(r) + "/" + tag + fileSuffix
}

// TagsDir is the directory of a repository's tag files.
func TagsDir(r opm.Repository) string { return r.Path() + "/" + tagsDir }

// ManifestsDir is the directory of a repository's manifests kept by digest.
func ManifestsDir(r opm.Repository) string { return r.Path() + "/" + manifestsDir }

// ManifestPath is the file of a manifest kept by digest:
// ns/project/repo/manifests/<64 hex>.json.
func ManifestPath(r opm.Repository, d digest.Digest) string {
	return ManifestsDir(r) + "/" + d.Encoded() + fileSuffix
}

// MetaPath is the optional description file of a namespace, project or
// repository (1 to 3 name parts): namespace.json, project.json or
// repository.json inside it.
func MetaPath(parts []string) string {
	return strings.Join(parts, "/") + "/" + metaFiles[len(parts)]
}

// Path is what a path of the metadata holds.
type Path struct {
	Role Role
	// Ref is the manifest's reference (RoleTag: a tag; RoleManifest: a
	// digest).
	Ref opm.Reference
	// Level is the node a RoleMeta file describes (1 to 3 name parts).
	Level []string
}

// Role is what a metadata path is for: a tag, a manifest kept by digest, a description.
type Role int

const (
	// RoleOther is a path the layout gives no meaning (a directory, or a
	// file that belongs nowhere).
	RoleOther Role = iota
	// RoleTag is a tag file, ns/project/repo/tags/<tag>.json.
	RoleTag
	// RoleManifest is a manifest kept by digest,
	// ns/project/repo/manifests/<hex>.json.
	RoleManifest
	// RoleMeta is a namespace.json, project.json or repository.json.
	RoleMeta
)

// IsManifest reports whether the path holds a manifest (a tag or one kept by
// digest).
func (p Path) IsManifest() bool { return p.Role == RoleTag || p.Role == RoleManifest }

// Parse decodes a file path of the metadata. A path in the place of a tag
// or manifest file whose names break the rules fails with opm.ErrInvalid
// (what arrives by git is checked as strictly as what arrives by push) and
// still has its Role; any other path the layout gives no meaning is
// RoleOther.
func Parse(p string) (Path, error) {
	parts := strings.Split(p, "/")
	if n := len(parts); n >= 2 && n <= 4 && parts[n-1] == metaFiles[n-1] {
		level := parts[:n-1]
		for i, name := range level {
			if !opm.ValidComponent(name) {
				return Path{Role: RoleMeta}, opm.Errorf(opm.ErrInvalid, "metadata file %q: %s %q is not a valid name", p, LevelNames[i+1], name)
			}
		}
		return Path{Role: RoleMeta, Level: level}, nil
	}
	if len(parts) != 5 || (parts[3] != tagsDir && parts[3] != manifestsDir) {
		return Path{}, nil
	}
	name, ok := strings.CutSuffix(parts[4], fileSuffix)
	if !ok {
		return Path{}, nil
	}
	kind := RoleTag
	if parts[3] == manifestsDir {
		kind = RoleManifest
	}
	repo, err := opm.ParseRepository(strings.Join(parts[:3], "/"))
	if err != nil {
		return Path{Role: kind}, fmt.Errorf("metadata file %q: %w", p, err)
	}
	ref := opm.Reference{Repository: repo}
	if kind == RoleTag {
		if !opm.ValidTag(name) {
			return Path{Role: kind}, opm.Errorf(opm.ErrInvalid, "metadata file %q: %q is not a valid tag", p, name)
		}
		ref.Tag = name
		return Path{Role: kind, Ref: ref}, nil
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, name)
	if _, err := opm.ParseDigest(d.String()); err != nil {
		return Path{Role: kind}, opm.Errorf(opm.ErrInvalid, "metadata file %q: not <sha256 hex>.json", p)
	}
	ref.Digest = d
	return Path{Role: kind, Ref: ref}, nil
}

// TagOfEntry is the tag an entry of a tags directory holds: a file
// <tag>.json with a valid tag name.
func TagOfEntry(e Entry) (string, bool) {
	t, ok := TagOfFile(e.Name)
	return t, ok && !e.Dir
}

// TagOfFile is the tag a file of a tags directory named name holds:
// name is <tag>.json with a valid tag name.
func TagOfFile(name string) (string, bool) {
	t, ok := strings.CutSuffix(name, fileSuffix)
	return t, ok && opm.ValidTag(t)
}

// digestOfEntry is the digest an entry of a manifests directory is named
// by: a file <64 hex>.json.
func digestOfEntry(e Entry) (digest.Digest, bool) {
	hex, ok := strings.CutSuffix(e.Name, fileSuffix)
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if !ok || e.Dir {
		return "", false
	}
	_, err := opm.ParseDigest(d.String())
	return d, err == nil
}

// IsMetaFile reports whether name is the description file of a node at
// depth (1 to 3).
func IsMetaFile(depth int, name string) bool {
	return depth >= 1 && depth <= 3 && name == metaFiles[depth]
}
