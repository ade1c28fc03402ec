package localcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RunTests is the body of a TestMain: it starts one cluster from opts (none
// if opts is nil) in a temporary directory for the package's tests to share,
// calls setup with it, runs the tests, stops the cluster, and fails the run
// if any process the harness started is still running. It returns the exit
// code for os.Exit.
func RunTests(m interface{ Run() int }, opts *Options, setup func(*Cluster) error) int {
	code := runTests(m, opts, setup)
	if err := CheckNoLeaks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}

func runTests(m interface{ Run() int }, opts *Options, setup func(*Cluster) error) int {
	var c *Cluster
	if opts != nil {
		dir, err := os.MkdirTemp("", "fornax-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		o := *opts
		o.Dir = filepath.Join(dir, o.Name)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if c, err = Start(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	if setup != nil {
		if err := setup(c); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
