package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is the kernel's USER_HZ, the unit of the CPU times in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo to ask).
const clockTicks = 100

// Process names as the report shows them. When the API and the worker are one process
// (`orderflow dev`), it is reported once as ProcAPIWorker.
const (
	ProcAPI       = "api"
	ProcWorker    = "worker"
	ProcAPIWorker = "api+worker"
	ProcTemporal  = "temporal"
	ProcPostgres  = "postgres"
	ProcBench     = "bench"
)

// Proc is one observed part of the system: one or more processes (scaled-out workers),
// and for PostgreSQL the whole tree under the postmaster, whose backends come and go.
type Proc struct {
	Name string
	PIDs []int
	Tree bool // include descendants (PostgreSQL's backends and helpers)
}

// ProcSample is a Proc's resource use at one moment.
type ProcSample struct {
	CPUSeconds float64 // user + system time consumed so far (including reaped children for a tree)
	RSSBytes   int64   // resident memory now: VmRSS, or for a tree the sum of PSS (shared pages counted once)
	HWMBytes   int64   // the kernel's peak RSS (VmHWM) of the processes; 0 for a tree
	Alive      bool    // at least one of the processes still exists
}

// procFS reads /proc; root is "/proc" except in tests.
type procFS struct{ root string }

// stat is what the report needs from /proc/PID/stat.
type stat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// parseStat parses the contents of /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("no ')' in stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime are fields 14..17.
	if len(f) < 15 {
		return stat{}, fmt.Errorf("stat has %d fields after the command", len(f))
	}
	var s stat
	var err error
	num := func(idx int) int64 {
		v, e := strconv.ParseInt(f[idx], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("stat field %d: %w", idx+3, e)
		}
		return v
	}
	s.ppid = int(num(1))
	s.utime, s.stime, s.cutime, s.cstime = num(11), num(12), num(13), num(14)
	return s, err
}

func (p procFS) stat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

// statusKB returns the kB values of the named fields of /proc/PID/status (VmRSS, VmHWM)
// or, for smaps_rollup, Pss.
func (p procFS) fieldsKB(pid int, file string, names ...string) (map[string]int64, error) {
	f, err := os.Open(filepath.Join(p.root, strconv.Itoa(pid), file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]int64, len(names))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// pids lists the processes now running.
func (p procFS) pids() []int {
	entries, _ := os.ReadDir(p.root)
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cmdline returns the process's arguments.
func (p procFS) cmdline(pid int) []string {
	b, err := os.ReadFile(filepath.Join(p.root, strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// descendants returns every live descendant of the roots.
func (p procFS) descendants(roots []int) []int {
	children := map[int][]int{}
	for _, pid := range p.pids() {
		if s, err := p.stat(pid); err == nil {
			children[s.ppid] = append(children[s.ppid], pid)
		}
	}
	var out []int
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Sample measures proc now.
func (p procFS) Sample(proc Proc) (s ProcSample) {
	var ticks int64
	defer func() { s.CPUSeconds = float64(ticks) / clockTicks }()
	for _, pid := range proc.PIDs {
		st, err := p.stat(pid)
		if err != nil {
			continue
		}
		s.Alive = true
		if !proc.Tree {
			ticks += st.utime + st.stime
			if kb, err := p.fieldsKB(pid, "status", "VmRSS", "VmHWM"); err == nil {
				s.RSSBytes += kb["VmRSS"] << 10
				s.HWMBytes += kb["VmHWM"] << 10
			}
			continue
		}
		// A tree: the root, its live descendants, and (through cutime/cstime) the ones that
		// exited and were reaped, so that CPU deltas stay right as backends come and go.
		for _, q := range append([]int{pid}, p.descendants([]int{pid})...) {
			qs, err := p.stat(q)
			if err != nil {
				continue
			}
			ticks += qs.utime + qs.stime + qs.cutime + qs.cstime
			if kb, err := p.fieldsKB(q, "smaps_rollup", "Pss"); err == nil {
				s.RSSBytes += kb["Pss"] << 10
			}
		}
	}
	return s
}

// Targets say where the parts of the system listen, for finding their processes.
type Targets struct {
	APIURL          string // http://host:port of the API; of several replicas, comma-separated
	TemporalAddress string // host:port of the Temporal frontend
	DatabaseURL     string // PostgreSQL URL
}

// Discover finds the system's processes on this machine. Each of the API, Temporal and
// PostgreSQL is first looked up by the local port it listens on (exact even when other
// stacks run on the same machine, as in tests), then by its command line:
// `orderflow dev|api|worker`, `temporal server start-dev`, `postgres -D`. A part found
// by command line only is used when exactly one process matches. Parts that cannot be
// seen (remote hosts, other users' processes) are left out; notes say why.
func Discover(t Targets) (procs []Proc, notes []string) {
	return procFS{root: "/proc"}.discover(t)
}

func (p procFS) discover(t Targets) ([]Proc, []string) {
	var notes []string
	ports := map[string]int{} // part → local port
	replicas := 0             // API replicas after the first, as parts "api 2", "api 3", …
	for i, raw := range strings.Split(t.APIURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		if port := localPort(u.Host, u.Scheme); port > 0 {
			part := ProcAPI
			if i > 0 {
				replicas++
				part = fmt.Sprintf("%s %d", ProcAPI, replicas+1)
			}
			ports[part] = port
		}
	}
	if port := localPort(t.TemporalAddress, ""); port > 0 {
		ports[ProcTemporal] = port
	}
	if u, err := url.Parse(t.DatabaseURL); err == nil {
		if port := localPort(u.Host, "postgres"); port > 0 {
			ports[ProcPostgres] = port
		}
	}
	listeners := p.listeners(ports)

	byCmd := p.byCommandLine()
	find := func(part string) int {
		if pid, ok := listeners[part]; ok {
			return pid
		}
		switch c := byCmd[part]; len(c) {
		case 1:
			return c[0]
		case 0:
			notes = append(notes, part+": no process found")
		default:
			notes = append(notes, fmt.Sprintf("%s: %d candidate processes %v and none holds the port; pass --pids", part, len(c), c))
		}
		return 0
	}

	var procs []Proc
	api := find(ProcAPI)
	if api > 0 {
		if args := p.cmdline(api); len(args) > 1 && args[1] == "dev" {
			procs = append(procs, Proc{Name: ProcAPIWorker, PIDs: []int{api}})
		} else {
			pids := []int{api}
			for i := range replicas {
				if pid, ok := listeners[fmt.Sprintf("%s %d", ProcAPI, i+2)]; ok && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			procs = append(procs, Proc{Name: ProcAPI, PIDs: pids})
		}
	}
	if api == 0 || procs[0].Name == ProcAPI {
		// Workers listen on no port of the bench's knowing: every `orderflow worker`
		// connected to the system's PostgreSQL counts (other stacks may run workers too).
		w := byCmd[ProcWorker]
		if pg, ok := ports[ProcPostgres]; ok {
			w = slices.DeleteFunc(w, func(pid int) bool { return !p.connectedTo(pid, pg) })
		}
		if len(w) > 0 {
			procs = append(procs, Proc{Name: ProcWorker, PIDs: w})
		} else {
			notes = append(notes, "worker: no `orderflow worker` process of this system found")
		}
	}
	if pid := find(ProcTemporal); pid > 0 {
		procs = append(procs, Proc{Name: ProcTemporal, PIDs: []int{pid}})
	}
	if pid := find(ProcPostgres); pid > 0 {
		procs = append(procs, Proc{Name: ProcPostgres, PIDs: []int{pid}, Tree: true})
	}
	return procs, notes
}

// localPort returns the port of hostport when its host is this machine, else 0. scheme
// supplies the default port when hostport has none.
func localPort(hostport, scheme string) int {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
		portText = map[string]string{"http": "80", "https": "443", "postgres": "5432", "postgresql": "5432"}[scheme]
	}
	switch host {
	case "", "localhost", "0.0.0.0", "::", "::1":
	default:
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return 0
		}
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return 0
	}
	return port
}

// listeners maps each part to the process listening on its TCP port, from the sockets
// in /proc/net/tcp{,6} and the file descriptors of every process.
func (p procFS) listeners(ports map[string]int) map[string]int {
	inodes := map[string]string{} // socket inode → part
	for _, file := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(p.root, file))
		if err != nil {
			continue
		}
		for part, inode := range listeningInodes(b, ports) {
			inodes[inode] = part
		}
	}
	out := map[string]int{}
	if len(inodes) == 0 {
		return out
	}
	for _, pid := range p.pids() {
		fdDir := filepath.Join(p.root, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if part, ok := inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")]; ok {
				if _, seen := out[part]; !seen {
					out[part] = pid
				}
			}
		}
		if len(out) == len(ports) {
			break
		}
	}
	return out
}

// connectedTo reports whether process pid holds an established TCP connection to port
// on this machine.
func (p procFS) connectedTo(pid, port int) bool {
	mine := map[string]bool{}
	fdDir := filepath.Join(p.root, strconv.Itoa(pid), "fd")
	fds, _ := os.ReadDir(fdDir)
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && strings.HasPrefix(link, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	for _, file := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(p.root, file))
		if err != nil {
			continue
		}
		for _, inode := range connectionInodes(b, port) {
			if mine[inode] {
				return true
			}
		}
	}
	return false
}

// connectionInodes parses a /proc/net/tcp table and returns the inodes of the
// established (01) connections whose remote end is port.
func connectionInodes(table []byte, port int) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "01" {
			continue
		}
		if _, hexPort, ok := strings.Cut(f[2], ":"); ok {
			if n, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(n) == port {
				out = append(out, f[9])
			}
		}
	}
	return out
}

// listeningInodes parses a /proc/net/tcp table and returns, for each part whose port a
// socket in state LISTEN (0A) holds, that socket's inode.
func listeningInodes(table []byte, ports map[string]int) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseInt(hexPort, 16, 32)
		if err != nil {
			continue
		}
		for part, want := range ports {
			if int(port) == want {
				out[part] = f[9]
			}
		}
	}
	return out
}

// byCommandLine finds candidate processes of each part by their arguments.
func (p procFS) byCommandLine() map[string][]int {
	out := map[string][]int{}
	self := os.Getpid()
	for _, pid := range p.pids() {
		if pid == self {
			continue
		}
		args := p.cmdline(pid)
		if len(args) == 0 {
			continue
		}
		if part := partOf(args); part != "" {
			out[part] = append(out[part], pid)
		}
	}
	return out
}

// partOf says which part of the system a command line runs, if any. `go run
// ./cmd/orderflow dev` is the go tool, not OrderFlow, so the program's own name is
// checked, not a substring of the whole line.
func partOf(args []string) string {
	base := filepath.Base(args[0])
	switch {
	case base == "orderflow" && len(args) > 1:
		switch args[1] {
		case "dev", "api":
			return ProcAPI
		case "worker":
			return ProcWorker
		}
	case base == "temporal" && len(args) > 2 && args[1] == "server" && args[2] == "start-dev":
		return ProcTemporal
	case (base == "postgres" || base == "postmaster") && slices.Contains(args, "-D"):
		return ProcPostgres
	}
	return ""
}

// ParsePIDs parses --pids: api=PID,worker=PID,temporal=PID,postgres=PID (any subset; a
// part may be named several times, e.g. two workers). When the API and the worker are
// the same process it is reported once, as api+worker.
func ParsePIDs(s string) ([]Proc, error) {
	byName := map[string][]int{}
	var order []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, pidText, ok := strings.Cut(item, "=")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			return nil, fmt.Errorf("--pids: %q is not NAME=PID", item)
		}
		switch name {
		case ProcAPI, ProcWorker, ProcTemporal, ProcPostgres:
		default:
			return nil, fmt.Errorf("--pids: unknown part %q (api, worker, temporal or postgres)", name)
		}
		if _, seen := byName[name]; !seen {
			order = append(order, name)
		}
		byName[name] = append(byName[name], pid)
	}
	if api, worker := byName[ProcAPI], byName[ProcWorker]; len(api) == 1 && len(worker) == 1 && api[0] == worker[0] {
		byName[ProcAPIWorker] = api
		delete(byName, ProcAPI)
		delete(byName, ProcWorker)
		order = slices.DeleteFunc(order, func(n string) bool { return n == ProcWorker })
		order[slices.Index(order, ProcAPI)] = ProcAPIWorker
	}
	procs := make([]Proc, 0, len(order))
	for _, name := range order {
		procs = append(procs, Proc{Name: name, PIDs: byName[name], Tree: name == ProcPostgres})
	}
	return procs, nil
}

// parseMachineCPU parses the first line of /proc/stat ("cpu user nice system idle iowait
// irq softirq steal …", in clock ticks summed over all CPUs) and returns the busy time
// in seconds: everything but idle and iowait.
func parseMachineCPU(b []byte) (float64, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("no cpu line in /proc/stat")
	}
	var busy int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return float64(busy) / clockTicks, nil
}

// machineCPU returns the CPU seconds the whole machine has been busy; 0 when /proc/stat
// cannot be read.
func (p procFS) machineCPU() float64 {
	b, err := os.ReadFile(filepath.Join(p.root, "stat"))
	if err != nil {
		return 0
	}
	s, _ := parseMachineCPU(b)
	return s
}

// loadAverage returns the one-minute load average, or 0.
func (p procFS) loadAverage() float64 {
	b, err := os.ReadFile(filepath.Join(p.root, "loadavg"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
