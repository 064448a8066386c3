package databus_test

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/databus/databus/"

// TestPackageBoundaries keeps the layout's rules (README, Layout): capture
// and snapshot never import each other, the shared internal packages
// import neither, and sdk imports no databus package.
func TestPackageBoundaries(t *testing.T) {
	rules := []struct {
		dir       string
		forbidden []string
	}{
		{"capture", []string{"snapshot", "apply", "cmd"}},
		{"snapshot", []string{"capture", "apply", "cmd"}},
		{"sdk", []string{""}}, // no databus package at all
	}
	for _, shared := range []string{"bus", "ddl", "filter", "mysqlsrc", "rowcodec", "rowevent"} {
		rules = append(rules, struct {
			dir       string
			forbidden []string
		}{"internal/" + shared, []string{"capture", "snapshot", "apply", "cmd"}})
	}
	for _, r := range rules {
		pkg, err := build.ImportDir(filepath.FromSlash(r.dir), 0)
		if err != nil {
			t.Fatalf("reading package %s: %v", r.dir, err)
		}
		for _, imp := range pkg.Imports {
			own, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if slices.ContainsFunc(r.forbidden, func(f string) bool { return f == "" || own == f || strings.HasPrefix(own, f+"/") }) {
				t.Errorf("%s imports %s", r.dir, imp)
			}
		}
	}
}
