package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a program started beside the clusters (tether-node, say). Down stops it with them.
type Process struct {
	Name string   `json:"name"`
	Args []string `json:"args"` // Args[0] is the binary's absolute path
	Pid  int      `json:"pid"`  // 0 when stopped
	Log  string   `json:"log"`
}

// StartProcess starts args (args[0] an absolute path) in its own session, appending its output to
// <Dir>/logs/<name>.log, and records it in the state. A process of that name that still runs is an error.
func (s *State) StartProcess(name string, args ...string) (*Process, error) {
	if len(args) == 0 || !filepath.IsAbs(args[0]) {
		return nil, fmt.Errorf("start %s: want an absolute binary path", name)
	}
	if p := s.Process(name); p != nil && p.running() {
		return nil, fmt.Errorf("start %s: already running as pid %d", name, p.Pid)
	}
	logPath := filepath.Join(s.Dir, logsDir, name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own session: it outlives tetherctl, and a Ctrl-C in the terminal does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }() // reap it when this process is its parent
	p := Process{Name: name, Args: args, Pid: cmd.Process.Pid, Log: logPath}
	s.Processes = slices.DeleteFunc(s.Processes, func(q Process) bool { return q.Name == name })
	s.Processes = append(s.Processes, p)
	return &s.Processes[len(s.Processes)-1], s.save()
}

// Process returns the recorded process of that name, or nil.
func (s *State) Process(name string) *Process {
	for i := range s.Processes {
		if s.Processes[i].Name == name {
			return &s.Processes[i]
		}
	}
	return nil
}

// StopProcess sends sig to the named process and waits until it is gone (SIGKILL after 10 s).
func (s *State) StopProcess(name string, sig syscall.Signal) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	if p.running() {
		if err := signalAndWait(p.Pid, sig); err != nil {
			return fmt.Errorf("stop %s (pid %d): %w", name, p.Pid, err)
		}
	}
	p.Pid = 0
	return s.save()
}

// RestartProcess starts the named process again with the same arguments.
func (s *State) RestartProcess(name string) error {
	p := s.Process(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	_, err := s.StartProcess(name, p.Args...)
	return err
}

// running reports whether pid still runs the recorded binary (a reused pid does not count).
func (p *Process) running() bool {
	if p.Pid <= 0 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
	if err != nil || !strings.HasPrefix(string(cmdline), p.Args[0]+"\x00") {
		return false
	}
	return !zombie(p.Pid)
}

// zombie reports a process that has exited but is not reaped yet (or is gone altogether).
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func (s *State) stopProcesses() error {
	var errs []error
	for i := range s.Processes {
		p := &s.Processes[i]
		if p.running() {
			if err := signalAndWait(p.Pid, syscall.SIGTERM); err != nil {
				errs = append(errs, fmt.Errorf("stop %s (pid %d): %w", p.Name, p.Pid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// signalAndWait sends sig, waits up to 10 s for the process to go, then SIGKILLs it.
func signalAndWait(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	for range 100 {
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// PauseAPIServer freezes a cluster's kube-apiserver (SIGSTOP): connections hang and time out, as with a member
// that dropped off the network, while the cluster's other components and data stay as they were.
func (s *State) PauseAPIServer(name string) error { return s.signalAPIServer(name, syscall.SIGSTOP) }

// ResumeAPIServer lets a paused kube-apiserver go on (SIGCONT).
func (s *State) ResumeAPIServer(name string) error { return s.signalAPIServer(name, syscall.SIGCONT) }

func (s *State) signalAPIServer(name string, sig syscall.Signal) error {
	c, err := s.cluster(name)
	if err != nil {
		return err
	}
	pidFile := filepath.Join(s.Dir, kwokDir, "clusters", c.KwokName, "pids", "kube-apiserver.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", pidFile, err)
	}
	return syscall.Kill(pid, sig)
}

func (s *State) cluster(name string) (Cluster, error) {
	for _, c := range s.Clusters {
		if c.Name == name {
			return c, nil
		}
	}
	return Cluster{}, fmt.Errorf("no cluster %s", name)
}

// ProcessRunning reports whether p still runs (a reused pid does not count).
func ProcessRunning(p *Process) bool { return p.running() }

// FreePorts finds n consecutive free ports and returns the first.
func FreePorts(n int) (int, error) {
	for range 100 {
		first, err := FreePort()
		if err != nil {
			return 0, err
		}
		ok := true
		for p := first + 1; p < first+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if ok = err == nil; ok {
				l.Close()
			}
		}
		if ok {
			return first, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports", n)
}

// FreePort is a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
