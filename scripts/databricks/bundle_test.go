// Package databricks holds pilake's Databricks scripts (Python, SQL and an
// Asset Bundle); nothing Databricks can run here, so its Go tests check the
// bundle's structure and the Python tests (test_*.py, run by scripts/test.sh)
// check the pure-Python fold against the Go fold's vectors.
package databricks

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type bundle struct {
	Bundle    struct{ Name string }
	Variables map[string]struct {
		Description string
		Default     any
	}
	Resources struct {
		Jobs map[string]struct {
			Name  string
			Tasks []struct {
				TaskKey         string `yaml:"task_key"`
				EnvironmentKey  string `yaml:"environment_key"`
				SparkPythonTask *struct {
					PythonFile string   `yaml:"python_file"`
					Parameters []string `yaml:"parameters"`
				} `yaml:"spark_python_task"`
			}
			Environments []struct {
				EnvironmentKey string `yaml:"environment_key"`
			}
		}
		Pipelines map[string]struct {
			Serverless    bool
			Catalog       string
			Schema        string
			Libraries     []struct{ File struct{ Path string } }
			Configuration map[string]string
		}
	}
	Targets map[string]any
}

// TestBundle checks databricks.yml: it parses, every file it deploys exists,
// every ${var.x} is declared, every task runs on a declared environment
// (serverless), and every --flag a task passes is one its script reads.
func TestBundle(t *testing.T) {
	raw, err := os.ReadFile("databricks.yml")
	if err != nil {
		t.Fatal(err)
	}
	var b bundle
	if err := yaml.Unmarshal(raw, &b); err != nil {
		t.Fatalf("databricks.yml: %v", err)
	}
	if b.Bundle.Name == "" || len(b.Targets) == 0 {
		t.Error("no bundle name or targets")
	}
	for _, m := range regexp.MustCompile(`\$\{var\.([a-z_]+)\}`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := b.Variables[m[1]]; !ok {
			t.Errorf("${var.%s} used, not declared", m[1])
		}
	}
	exists := func(p string) {
		t.Helper()
		if _, err := os.Stat(filepath.FromSlash(p)); err != nil {
			t.Errorf("deploys %s: %v", p, err)
		}
	}
	tasks := 0
	for name, j := range b.Resources.Jobs {
		var envs []string
		for _, e := range j.Environments {
			envs = append(envs, e.EnvironmentKey)
		}
		for _, task := range j.Tasks {
			tasks++
			if task.SparkPythonTask == nil {
				t.Errorf("job %s task %s: not a spark_python_task", name, task.TaskKey)
				continue
			}
			exists(task.SparkPythonTask.PythonFile)
			if !slices.Contains(envs, task.EnvironmentKey) {
				t.Errorf("job %s task %s: environment %q not declared (a Python task needs one on serverless)", name, task.TaskKey, task.EnvironmentKey)
			}
			script, _ := os.ReadFile(task.SparkPythonTask.PythonFile)
			for _, p := range task.SparkPythonTask.Parameters {
				if strings.HasPrefix(p, "--") && !strings.Contains(string(script), `"`+p+`"`) {
					t.Errorf("job %s task %s passes %s, which %s does not read", name, task.TaskKey, p, task.SparkPythonTask.PythonFile)
				}
			}
		}
	}
	if tasks < 2 || len(b.Resources.Pipelines) == 0 {
		t.Errorf("%d job tasks and %d pipelines, want the register and fold tasks and the SQL pipeline", tasks, len(b.Resources.Pipelines))
	}
	for name, p := range b.Resources.Pipelines {
		if !p.Serverless || p.Catalog == "" || p.Schema == "" {
			t.Errorf("pipeline %s: want serverless with a Unity Catalog catalog and schema", name)
		}
		for _, l := range p.Libraries {
			exists(l.File.Path)
			sql, _ := os.ReadFile(l.File.Path)
			for _, m := range regexp.MustCompile(`\$\{([a-z.]+)\}`).FindAllStringSubmatch(string(sql), -1) {
				if _, ok := p.Configuration[m[1]]; !ok {
					t.Errorf("pipeline %s: %s uses ${%s}, not in its configuration", name, l.File.Path, m[1])
				}
			}
		}
	}
}
