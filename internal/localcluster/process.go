package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables that mark every process the harness starts, so that
// leftovers can be found and killed by cluster directory or by owner even when
// the process that started them is gone.
const (
	envDir   = "FORNAX_LOCALCLUSTER_DIR"
	envOwner = "FORNAX_LOCALCLUSTER_OWNER"
)

// stopGrace is how long a process gets to exit after SIGTERM before SIGKILL.
// kube-apiserver can take more than 10 s to exit on SIGTERM; nothing the
// harness runs keeps state worth that wait, so the grace is short.
const stopGrace = 3 * time.Second

// process is one child process in its own process group.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; read only after done is closed
}

// processSpec says how to start a process.
type processSpec struct {
	name     string   // component name, used for the log file and messages
	path     string   // binary
	args     []string // arguments
	netns    string   // network namespace to run in (nsenter --net), or ""
	dir      string   // cluster directory (marks the process)
	logDir   string
	owner    int  // pid of the harness user that owns the process (0: none)
	detached bool // survive the parent (demo); otherwise killed when the parent dies
}

func startProcess(spec processSpec) (*process, error) {
	if err := os.MkdirAll(spec.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory for %s: %w", spec.name, err)
	}
	logPath := filepath.Join(spec.logDir, spec.name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file for %s: %w", spec.name, err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(spec.path, spec.args...)
	if spec.netns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + spec.netns, "--", spec.path}, spec.args...)...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = spec.dir
	cmd.Env = append(os.Environ(), envDir+"="+spec.dir)
	if spec.owner != 0 {
		cmd.Env = append(cmd.Env, envOwner+"="+strconv.Itoa(spec.owner))
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if !spec.detached {
		// If the test binary dies (timeout panic, SIGKILL), the kernel kills the child.
		attr.Pdeathsig = syscall.SIGKILL
	}
	cmd.SysProcAttr = attr
	fmt.Fprintf(logFile, "\n=== %s starting %s %s\n", time.Now().Format(time.RFC3339), spec.path, strings.Join(spec.args, " "))
	if err := onSpawnThread(cmd.Start); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", spec.name, spec.path, err)
	}
	p := &process{name: spec.name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// The parent-death signal fires when the *thread* that started a child exits,
// not the process: a test that lets a thread die on purpose (one that entered
// another network namespace, as netplane does) would kill whatever that
// thread had started. Every child is therefore started from one thread that
// is locked and never exits.
var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

// StartCommand starts cmd from that thread: a Pdeathsig it sets fires only
// when the process ends. For tests that start their own helpers (iperf3).
func StartCommand(cmd *exec.Cmd) error { return onSpawnThread(cmd.Start) }

func onSpawnThread(start func() error) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for f := range spawnReq {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- start() }
	return <-errc
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes why the process exited, with the end of its log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%w); last lines of %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 15))
}

// stop sends SIGTERM to the process group, then SIGKILL after the grace
// period, and waits for the process to be reaped.
func (p *process) stop() {
	if p.exited() {
		killGroup(p.pid(), syscall.SIGKILL) // anything it left in its group
		return
	}
	killGroup(p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		killGroup(p.pid(), syscall.SIGKILL)
		<-p.done
	}
	killGroup(p.pid(), syscall.SIGKILL)
}

// kill kills the process group at once, as a crash or power cut would.
func (p *process) kill() {
	killGroup(p.pid(), syscall.SIGKILL)
	<-p.done
}

func killGroup(pgid int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}

// Process describes a running process the harness started.
type Process struct {
	PID  int
	Dir  string // the cluster directory it belongs to
	Args []string
}

// FindProcesses lists running processes started by the harness whose cluster
// directory is under dir (if dir is not empty) and whose owner is owner (if
// owner is not 0). It reads /proc, so it also finds processes whose starter
// crashed.
func FindProcesses(dir string, owner int) ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	if dir != "" {
		dir = filepath.Clean(dir)
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or not ours to read
		}
		var pdir string
		var pown int
		for _, kv := range bytes.Split(env, []byte{0}) {
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				continue
			}
			switch string(k) {
			case envDir:
				pdir = string(v)
			case envOwner:
				pown, _ = strconv.Atoi(string(v))
			}
		}
		if pdir == "" || isZombie(pid) {
			continue
		}
		if dir != "" && pdir != dir && !strings.HasPrefix(pdir, dir+string(filepath.Separator)) {
			continue
		}
		if owner != 0 && pown != owner {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		out = append(out, Process{PID: pid, Dir: pdir, Args: args})
	}
	return out, nil
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// KillProcesses kills every harness process under dir (see FindProcesses) and
// waits, up to the context's deadline, until they are gone.
func KillProcesses(ctx context.Context, dir string) error {
	procs, err := FindProcesses(dir, 0)
	if err != nil {
		return err
	}
	for _, p := range procs {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	for {
		left, err := FindProcesses(dir, 0)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d processes under %s still running after SIGKILL: %w", len(left), dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// processSet is the set of processes of one cluster.
type processSet struct {
	mu    sync.Mutex
	procs []*process
}

func (s *processSet) add(p *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
}

func (s *processSet) remove(p *process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			return
		}
	}
}

// stopAll stops every process in parallel, each within the grace period.
func (s *processSet) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// firstExited returns the exit error of the first process that has exited, if any.
func (s *processSet) firstExited() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.exited() {
			return p.exitError()
		}
	}
	return nil
}

// CheckNoLeaks returns an error naming every process the harness started for
// this process that is still running. Test binaries call it after their tests.
func CheckNoLeaks() error {
	left, err := FindProcesses("", os.Getpid())
	if err != nil {
		return fmt.Errorf("leak check: %w", err)
	}
	if len(left) == 0 {
		return nil
	}
	var b strings.Builder
	for _, p := range left {
		fmt.Fprintf(&b, "\n  pid %d: %s", p.PID, strings.Join(p.Args, " "))
	}
	return fmt.Errorf("leak check: %d processes still running:%s", len(left), b.String())
}
