package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// stackEnvFile is where `orderflow dev` writes how to reach the stack it runs, in its
// DATA_DIR, for the operators' commands run beside it.
const stackEnvFile = "stack.env"

// writeStackEnv writes vars to dataDir's stack.env (readable by its owner alone: the
// database URL may hold a password) and returns a func that removes it.
func writeStackEnv(dataDir string, vars map[string]string) (func(), error) {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("# How to reach the running `orderflow dev`; the operators' commands read it. Removed when it stops.\n")
	for _, k := range names {
		fmt.Fprintf(&b, "%s=%s\n", k, vars[k])
	}
	path := filepath.Join(dataDir, stackEnvFile)
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return func() { _ = os.Remove(path) }, nil
}

// withStackEnv returns getenv, falling back, for what it leaves unset, on the stack.env of
// DATA_DIR (default .orderflow) if there is one.
func withStackEnv(getenv func(string) string) func(string) string {
	dir := getenv("DATA_DIR")
	if dir == "" {
		dir = ".orderflow"
	}
	vars, err := readEnvFile(filepath.Join(dir, stackEnvFile))
	if err != nil || len(vars) == 0 {
		return getenv
	}
	return func(name string) string {
		if v := getenv(name); v != "" || getenv(name+"_FILE") != "" {
			return v
		}
		return vars[name]
	}
}

// readEnvFile reads NAME=VALUE lines, skipping blanks and # comments; a missing file
// holds nothing.
func readEnvFile(path string) (map[string]string, error) {
	vars := map[string]string{}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return vars, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if name, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[strings.TrimSpace(name)] = strings.TrimSpace(value)
		}
	}
	return vars, sc.Err()
}
