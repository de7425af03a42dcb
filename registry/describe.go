package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"

	"github.com/openpm/opm"
	"github.com/openpm/opm/gitmeta"
	"github.com/openpm/opm/layout"
)

// Describe sets the description file of a namespace, project or repository
// (1 to 3 name parts; docs/design.md §3) to body, a JSON object checked as
// every description file is (layout.CheckMeta: its fields, their text, at
// most layout.MaxMetaSize) and written with its keys sorted; an empty
// object removes the file. It is one commit, "describe NS/PROJECT", and
// none when the file already says so. A node that does not exist is
// opm.ErrNotFound: a description names something the registry has.
func (r *Registry) Describe(ctx context.Context, parts []string, body []byte) (committed bool, err error) {
	if len(parts) < 1 || len(parts) > 3 {
		return false, opm.Errorf(opm.ErrInvalid, "describe: a namespace, project or repository, not %q", strings.Join(parts, "/"))
	}
	p := layout.MetaPath(parts)
	if err := layout.CheckMeta(p, len(parts), body); err != nil {
		return false, err
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		return false, opm.Errorf(opm.ErrInvalid, "metadata file %q: %v", p, err)
	}
	var data []byte
	if len(fields) > 0 {
		if data, err = json.MarshalIndent(fields, "", "  "); err != nil {
			return false, err
		}
		data = append(data, '\n')
	}
	name := strings.Join(parts, "/")
	_, committed, err = r.meta.Update(ctx, r.Author(ctx), func(s *gitmeta.Snapshot) ([]gitmeta.Change, gitmeta.Message, error) {
		v := r.newView(s)
		if ok, err := v.HasNode(parts); err != nil {
			return nil, gitmeta.Message{}, err
		} else if !ok {
			return nil, gitmeta.Message{}, v.Missing(opm.Reference{}, parts)
		}
		msg := gitmeta.Message{Subject: "describe " + name}
		cur, err := s.ReadSmallFile(p, layout.MaxMetaSize+1)
		switch {
		case err == nil && bytes.Equal(cur, data), err != nil && data == nil:
			return nil, msg, nil // already so: no commit
		case data == nil:
			msg.Subject += ": no description"
			return []gitmeta.Change{{Path: p, Delete: true}}, msg, nil
		}
		return []gitmeta.Change{{Path: p, Data: data}}, msg, nil
	})
	return committed, err
}
