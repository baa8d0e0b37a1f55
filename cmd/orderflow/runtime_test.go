package main

import "testing"

func TestRuntimeSettingsDefaultAndDeferToTheRuntimesOwn(t *testing.T) {
	cases := []struct {
		env      map[string]string
		gc       int
		mem      int64
		refusing bool
	}{
		{env: nil, gc: 200, mem: -1},
		{env: map[string]string{"GOGC": "100"}, gc: -1, mem: -1},
		{env: map[string]string{"ORDERFLOW_MEMORY_LIMIT": "268435456"}, gc: 200, mem: 241591910},
		{env: map[string]string{"ORDERFLOW_MEMORY_LIMIT": "268435456", "GOMEMLIMIT": "100MiB"}, gc: 200, mem: -1},
		{env: map[string]string{"ORDERFLOW_MEMORY_LIMIT": "256Mi"}, refusing: true},
		{env: map[string]string{"ORDERFLOW_MEMORY_LIMIT": "-1"}, refusing: true},
	}
	for _, c := range cases {
		gc, mem, err := runtimeSettings(func(k string) string { return c.env[k] })
		if c.refusing {
			if err == nil {
				t.Errorf("%v: accepted", c.env)
			}
			continue
		}
		if err != nil || gc != c.gc || mem != c.mem {
			t.Errorf("%v: GOGC %d, memory limit %d, %v; want %d, %d", c.env, gc, mem, err, c.gc, c.mem)
		}
	}
}
