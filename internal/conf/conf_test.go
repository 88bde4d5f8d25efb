package conf

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.conf")
	os.WriteFile(file, []byte("# comment\nname = \"from file\"\nrate = 100\ninterval = 2s\n"), 0o644)
	env := map[string]string{"PILAKE_RATE": "200", "PILAKE_CONFIG": file}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String(ConfigFlag, "", "")
	name := fs.String("name", "default", "")
	rate := fs.Int("rate", 1, "")
	interval := fs.Duration("interval", time.Second, "")
	other := fs.String("other", "x", "")
	err := Load(fs, []string{"--interval=3s"}, "PILAKE_", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if *name != "from file" || *rate != 200 || *interval != 3*time.Second || *other != "x" {
		t.Fatalf("got name=%q rate=%d interval=%v other=%q", *name, *rate, *interval, *other)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown": "nope = 1\n",
		"syntax":  "rate\n",
		"value":   "rate = abc\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name)
			os.WriteFile(file, []byte(content), 0o644)
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.String(ConfigFlag, "", "")
			fs.Int("rate", 1, "")
			if err := Load(fs, []string{"--config", file}, "PILAKE_", func(string) (string, bool) { return "", false }); err == nil {
				t.Fatal("want error")
			}
		})
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String(ConfigFlag, "", "")
	fs.Int("rate", 1, "")
	if err := Load(fs, nil, "PILAKE_", func(k string) (string, bool) { return "zz", k == "PILAKE_RATE" }); err == nil {
		t.Fatal("want error for bad environment value")
	}
}
