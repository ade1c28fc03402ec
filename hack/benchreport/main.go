// Command benchreport writes docs/benchmarks.md and docs/benchmarks.json from
// `go test -bench` output (make bench runs it) and prints the named figures.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/fornax-edge/fornax/internal/benchreport"
)

func main() {
	in := flag.String("in", "-", "benchmark output to read ('-': standard input)")
	md := flag.String("md", "docs/benchmarks.md", "Markdown report to write")
	js := flag.String("json", "docs/benchmarks.json", "JSON report to write")
	note := flag.String("note", "", "a sentence on where the results come from, printed under the title")
	flag.Parse()
	if err := run(*in, *md, *js, *note); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(in, md, js, note string) error {
	var r io.Reader = os.Stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	ms, err := benchreport.Parse(r)
	if err != nil {
		return err
	}
	if len(ms) == 0 {
		return fmt.Errorf("no benchmark results in %s: did the benchmarks run?", in)
	}
	raw, err := benchreport.JSON(ms)
	if err != nil {
		return err
	}
	if err := os.WriteFile(js, raw, 0o644); err != nil {
		return err
	}
	m := machine()
	m.Note = note
	if err := os.WriteFile(md, benchreport.Markdown(ms, m), 0o644); err != nil {
		return err
	}
	for _, e := range benchreport.Entries(ms) {
		if !strings.Contains(e.Name, ":") {
			fmt.Printf("%-45s %12.3f %s\n", e.Name, e.Value, e.Unit)
		}
	}
	fmt.Printf("wrote %s and %s\n", md, js)
	return nil
}

func machine() benchreport.Machine {
	m := benchreport.Machine{Date: time.Now().UTC().Format("2006-01-02"), CPU: "unknown CPU", Cores: strconv.Itoa(runtime.NumCPU()),
		Memory: "unknown", Kernel: "unknown", GoVersion: runtime.Version()}
	if v := field("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := field("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			m.Memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// field returns the value of the first "key: value" line of a /proc file.
func field(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
