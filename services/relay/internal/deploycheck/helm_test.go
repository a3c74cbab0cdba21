package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every RELAY_* variable the Helm chart sets or names is one Relay reads
// (docs/configuration.md documents each), so that a renamed variable cannot
// leave the chart setting one nothing reads. helm lint and kubeconform run
// in make test-helm (scripts/helm.sh).
func TestHelmChartNamesRealVariables(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`RELAY_[A-Z0-9_]*[A-Z0-9]`)
	documented := name.FindAllString(string(doc), -1)
	var files []string
	err = filepath.WalkDir(filepath.Join(root, "deploy", "helm", "relay"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range name.FindAllString(string(b), -1) {
			seen++
			if !slices.Contains(documented, v) {
				t.Errorf("%s names %s, which docs/configuration.md does not document", strings.TrimPrefix(f, root+"/"), v)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("the chart names %d RELAY_* variables; the walk found too few files (%d)", seen, len(files))
	}
}
