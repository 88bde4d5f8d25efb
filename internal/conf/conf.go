// Package conf fills a flag.FlagSet from, in rising precedence, the flags'
// defaults, an optional configuration file, PILAKE_* environment variables and
// the command line. All three pilake programs use it, so one name works
// everywhere: the flag --batch-interval, the variable PILAKE_BATCH_INTERVAL and
// the file line "batch-interval = 1s" set the same thing.
//
// The file is plain text, one "name = value" per line; blank lines and lines
// starting with '#' are ignored; values may be quoted with "". Unknown names
// are errors, so a typo is not silently ignored.
package conf

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ConfigFlag is the name of the flag (and PILAKE_CONFIG variable) that names the file.
const ConfigFlag = "config"

// EnvName returns the environment variable for a flag: "batch-interval" → "PILAKE_BATCH_INTERVAL".
func EnvName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Load parses args into fs, then applies the file named by --config (or
// PILAKE_CONFIG) and the environment (lookupEnv, usually os.LookupEnv) to every
// flag not given on the command line. fs must define a string flag named
// ConfigFlag. Prefix is "PILAKE_".
func Load(fs *flag.FlagSet, args []string, prefix string, lookupEnv func(string) (string, bool)) error {
	if fs.Lookup(ConfigFlag) == nil {
		return errors.New("conf: flag set has no --config flag")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	path := fs.Lookup(ConfigFlag).Value.String()
	if !onCommandLine[ConfigFlag] {
		if v, ok := lookupEnv(EnvName(prefix, ConfigFlag)); ok {
			path = v
			_ = fs.Set(ConfigFlag, v)
		}
	}
	fromFile := map[string]bool{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config file: %w", err)
		}
		values, err := Parse(data)
		if err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		for _, kv := range values {
			if fs.Lookup(kv.Name) == nil || kv.Name == ConfigFlag {
				return fmt.Errorf("config file %s line %d: unknown setting %q", path, kv.Line, kv.Name)
			}
			if onCommandLine[kv.Name] {
				continue
			}
			if err := fs.Set(kv.Name, kv.Value); err != nil {
				return fmt.Errorf("config file %s line %d: %s: %w", path, kv.Line, kv.Name, err)
			}
			fromFile[kv.Name] = true
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] || f.Name == ConfigFlag {
			return
		}
		name := EnvName(prefix, f.Name)
		if v, ok := lookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// KeyValue is one setting of a configuration file.
type KeyValue struct {
	Name, Value string
	Line        int
}

// Parse reads a configuration file's "name = value" lines.
func Parse(data []byte) ([]KeyValue, error) {
	var out []KeyValue
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want name = value, got %q", n, line)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if name == "" {
			return nil, fmt.Errorf("line %d: empty name", n)
		}
		if strings.HasPrefix(value, `"`) {
			uq, err := strconv.Unquote(value)
			if err != nil {
				return nil, fmt.Errorf("line %d: bad quoted value: %w", n, err)
			}
			value = uq
		}
		out = append(out, KeyValue{Name: name, Value: value, Line: n})
	}
	return out, sc.Err()
}
