package envconfig

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestEveryVariableIsDocumented fails when code reads a RELAY_* or OTEL_*
// variable that docs/configuration.md does not describe.
func TestEveryVariableIsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"((?:RELAY|OTEL)_[A-Z0-9_]+)"`)
	found := map[string]string{}
	for _, dir := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(src), -1) {
				found[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var missing []string
	for v, path := range found {
		if !strings.Contains(string(doc), "`"+v+"`") {
			missing = append(missing, v+" (read in "+path+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("not in docs/configuration.md: %s", m)
	}
	if len(found) < 50 {
		t.Fatalf("found only %d variables; is the walk broken?", len(found))
	}
}
