package bench

import "testing"

func TestSeveralAPIReplicasAreUsedInTurn(t *testing.T) {
	o := Options{APIURL: " http://a:1/, http://b:2,,"}.withDefaults()
	r := &runner{opts: o, apis: o.apis()}
	if got := r.opts.APIURL; got != "http://a:1,http://b:2" {
		t.Errorf("APIURL = %q, want the two replicas without slashes or blanks", got)
	}
	got := map[string]int{}
	for n := range int64(10) {
		got[r.api(n)]++
	}
	if got["http://a:1"] != 5 || got["http://b:2"] != 5 {
		t.Errorf("10 requests went %v, want 5 to each replica", got)
	}
}
