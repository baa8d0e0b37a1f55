package bench

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestParseStatCountsFieldsFromTheLastParenthesis(t *testing.T) {
	// A command name with spaces and parentheses, as a process may choose.
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 1000 0 0 0 250 75 12 3 20 0 9 0 12345 100000 200 18446744073709551615\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := stat{ppid: 17, utime: 250, stime: 75, cutime: 12, cstime: 3}
	if s != want {
		t.Errorf("parseStat = %+v, want %+v", s, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 no-paren S 1"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) did not fail", bad)
		}
	}
}

func TestPartOfMatchesTheProgramNotTheGoTool(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"/opt/orderflow/bin/orderflow", "dev"}, ProcAPI},
		{[]string{"/tmp/go-build1/b001/exe/orderflow", "api"}, ProcAPI},
		{[]string{"orderflow", "worker"}, ProcWorker},
		{[]string{"go", "run", "./cmd/orderflow", "dev"}, ""},
		{[]string{"/opt/orderflow/bin/orderflow", "bench", "--json"}, ""},
		{[]string{"/opt/orderflow/bin/temporal", "server", "start-dev", "--port", "7233"}, ProcTemporal},
		{[]string{"temporal", "workflow", "list"}, ""},
		{[]string{"/usr/lib/postgresql/15/bin/postgres", "-D", "/data", "-p", "5433"}, ProcPostgres},
		{[]string{"postgres: walwriter "}, ""},
	} {
		if got := partOf(c.args); got != c.want {
			t.Errorf("partOf(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}

func TestLocalPortOnlyForThisMachine(t *testing.T) {
	for _, c := range []struct {
		hostport, scheme string
		want             int
	}{
		{"127.0.0.1:8080", "http", 8080},
		{"localhost:5433", "postgres", 5433},
		{"[::1]:7233", "", 7233},
		{"127.0.0.1", "http", 80},
		{"localhost", "postgres", 5432},
		{"db.example.com:5432", "postgres", 0},
		{"10.1.2.3:8080", "http", 0},
		{"127.0.0.1:x", "http", 0},
	} {
		if got := localPort(c.hostport, c.scheme); got != c.want {
			t.Errorf("localPort(%q, %q) = %d, want %d", c.hostport, c.scheme, got, c.want)
		}
	}
}

func TestListeningInodesReadsProcNetTCP(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1539 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
`
	got := listeningInodes([]byte(table), map[string]int{ProcAPI: 8080, ProcPostgres: 5433, ProcTemporal: 7233})
	want := map[string]string{ProcAPI: "111", ProcPostgres: "222"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listeningInodes = %v, want %v (the established 8080 socket is not a listener)", got, want)
	}
}

func TestConnectionInodesAreEstablishedConnectionsToThePort(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1539 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 222 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2F0 0100007F:1539 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1539 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   104        0 555 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D2F1 0100007F:1539 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
`
	got := connectionInodes([]byte(table), 5433)
	if !reflect.DeepEqual(got, []string{"444"}) {
		t.Errorf("connections to 5433 = %v, want [444] (the client's end, established)", got)
	}
}

func TestParsePIDs(t *testing.T) {
	procs, err := ParsePIDs("api=10,worker=11,worker=12,temporal=20,postgres=30")
	if err != nil {
		t.Fatal(err)
	}
	want := []Proc{
		{Name: ProcAPI, PIDs: []int{10}},
		{Name: ProcWorker, PIDs: []int{11, 12}},
		{Name: ProcTemporal, PIDs: []int{20}},
		{Name: ProcPostgres, PIDs: []int{30}, Tree: true},
	}
	if !reflect.DeepEqual(procs, want) {
		t.Errorf("ParsePIDs = %+v, want %+v", procs, want)
	}
	procs, err = ParsePIDs("temporal=20,api=10,worker=10")
	if err != nil {
		t.Fatal(err)
	}
	want = []Proc{{Name: ProcTemporal, PIDs: []int{20}}, {Name: ProcAPIWorker, PIDs: []int{10}}}
	if !reflect.DeepEqual(procs, want) {
		t.Errorf("one process for api and worker: %+v, want %+v", procs, want)
	}
	for _, bad := range []string{"api", "api=x", "api=-1", "kafka=3"} {
		if _, err := ParsePIDs(bad); err == nil {
			t.Errorf("ParsePIDs(%q) did not fail", bad)
		}
	}
}

// writeProc lays out a fake /proc entry.
func writeProc(t *testing.T, root string, pid, ppid int, utime, stime, cutime, cstime int64, status, smaps string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := strconv.Itoa(pid) + " (p) S " + strconv.Itoa(ppid) + " 1 1 0 -1 0 0 0 0 0 " +
		strconv.FormatInt(utime, 10) + " " + strconv.FormatInt(stime, 10) + " " +
		strconv.FormatInt(cutime, 10) + " " + strconv.FormatInt(cstime, 10) + " 20 0 1 0 1 1 1\n"
	for name, body := range map[string]string{"stat": stat, "status": status, "smaps_rollup": smaps} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSampleSumsATreeWithItsReapedChildren(t *testing.T) {
	root := t.TempDir()
	// postmaster 100 with two backends, one of which has a child; 300 is unrelated.
	writeProc(t, root, 100, 1, 100, 50, 40, 10, "VmRSS:\t 1000 kB\n", "Pss:\t 500 kB\n")
	writeProc(t, root, 101, 100, 200, 100, 0, 0, "", "Pss:\t 300 kB\n")
	writeProc(t, root, 102, 100, 10, 0, 0, 0, "", "Pss:\t 200 kB\n")
	writeProc(t, root, 103, 102, 5, 5, 0, 0, "", "Pss:\t 100 kB\n")
	writeProc(t, root, 300, 1, 9000, 0, 0, 0, "VmRSS:\t 2048 kB\nVmHWM:\t 4096 kB\n", "Pss:\t 9 kB\n")
	fs := procFS{root: root}

	tree := fs.Sample(Proc{Name: ProcPostgres, PIDs: []int{100}, Tree: true})
	// (100+50+40+10) + (200+100) + 10 + (5+5) = 520 ticks
	if tree.CPUSeconds != 5.2 || tree.RSSBytes != 1100<<10 || !tree.Alive {
		t.Errorf("tree sample = %+v, want 5.2 s and 1100 kB PSS", tree)
	}
	one := fs.Sample(Proc{Name: ProcTemporal, PIDs: []int{300}})
	if one.CPUSeconds != 90 || one.RSSBytes != 2<<20 || one.HWMBytes != 4<<20 {
		t.Errorf("single sample = %+v, want 90 s, RSS 2 MB, HWM 4 MB", one)
	}
	if gone := fs.Sample(Proc{Name: ProcAPI, PIDs: []int{999}}); gone.Alive {
		t.Errorf("a missing process sampled alive: %+v", gone)
	}
}

func TestSampleOfThisProcessSeesItsCPUAndMemory(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	fs := procFS{root: "/proc"}
	me := Proc{Name: ProcBench, PIDs: []int{os.Getpid()}}
	before := fs.Sample(me)
	// Spin until the kernel has charged this process some CPU (a busy machine gives it
	// less than the wall time), for at most 10 s.
	after := before
	for deadline := time.Now().Add(10 * time.Second); after.CPUSeconds-before.CPUSeconds < 0.05 && time.Now().Before(deadline); {
		after = fs.Sample(me)
	}
	if !after.Alive || after.RSSBytes <= 0 || after.HWMBytes < after.RSSBytes {
		t.Errorf("sample of this process = %+v", after)
	}
	if after.CPUSeconds-before.CPUSeconds < 0.05 {
		t.Errorf("10 s of spinning showed %.2f CPU seconds", after.CPUSeconds-before.CPUSeconds)
	}
}

func TestParseMachineCPUCountsAllButIdleAndIOWait(t *testing.T) {
	stat := "cpu  100 20 30 5000 400 6 7 8 0 0\ncpu0 50 10 15 2500 200 3 3 4 0 0\n"
	got, err := parseMachineCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(100+20+30+6+7+8) / clockTicks; got != want {
		t.Errorf("busy = %v s, want %v", got, want)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a /proc/stat without its cpu line did not fail")
	}
}
