package shield

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/adit-dev/adit/control"
)

// TestWAFMemory50Hosts measures the heap the WAF keeps for 50 hostnames
// in block mode: all with one setting (one compiled CRS, shared), and each
// with a setting of its own (50 compiled). It takes minutes, so it runs
// only with ADIT_WAF_MEMORY=1; docs/performance.md has its figures.
func TestWAFMemory50Hosts(t *testing.T) {
	if os.Getenv("ADIT_WAF_MEMORY") == "" {
		t.Skip("set ADIT_WAF_MEMORY=1 to measure (minutes)")
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	for _, distinct := range []bool{false, true} {
		base := heap()
		w := &WAF{log: discard, cache: map[string]*engine{}}
		recs := map[string][]byte{}
		for i := range 50 {
			c := control.WAFConfig{Hostname: fmt.Sprintf("h%d.example.com", i), Mode: control.WAFBlock}
			if distinct {
				c.Exclusions = []control.WAFExclusion{{ID: "x", Rule: 942100 + i}}
			}
			recs[c.Hostname] = mustJSON(t, c)
		}
		start := time.Now()
		w.apply(recs)
		took := time.Since(start)
		used := heap() - base
		t.Logf("50 hostnames, distinct settings %v: %d compiled, %.1f MB heap, %.1fs to compile", distinct, len(w.cache), float64(used)/1e6, took.Seconds())
		w.mu.Lock()
		for k, e := range w.cache {
			closeEngine(e)
			delete(w.cache, k)
		}
		w.mu.Unlock()
		w.idx.Store(nil)
	}
}

// Hostnames whose settings have the same effect share one compiled WAF
// (the same rules file added to each under its own ID and name), and an
// engine no hostname uses any more is let go.
func TestWAFSharedEngines(t *testing.T) {
	w := &WAF{log: discard, cache: map[string]*engine{}}
	defer func() {
		for _, e := range w.cache {
			closeEngine(e)
		}
	}()
	rules := `SecRule ARGS:probe "@streq yes" "id:1000001,phase:1,deny,status:403"`
	recs := map[string][]byte{}
	for i, name := range []string{"a.example.com", "b.example.com"} {
		recs[name] = mustJSON(t, control.WAFConfig{Hostname: name, Mode: control.WAFBlock, Paranoia: 1, InboundThreshold: 5, OutboundThreshold: 4,
			BodyLimit: control.DefaultWAFBodyLimit, BodyLimitAction: control.BodyLimitReject, ResponseBodyLimit: control.DefaultWAFResponseLimit,
			Rules: []control.WAFRules{{ID: fmt.Sprint("id", i), Name: fmt.Sprint("file", i, ".conf"), Text: rules}}})
	}
	// The API's check compiles it first; the watch then finds it.
	var checked control.WAFConfig
	if err := json.Unmarshal(recs["a.example.com"], &checked); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(checked); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(control.WAFConfig{Mode: control.WAFBlock, Rules: []control.WAFRules{{Text: "SecRule nonsense"}}}); err == nil {
		t.Error("rules that do not compile: Check said nil")
	}
	var first *engine
	for _, e := range w.cache {
		first = e
	}
	w.apply(recs)
	idx := w.idx.Load()
	if len(w.cache) != 1 || idx.forHost("a.example.com") != idx.forHost("b.example.com") || idx.forHost("a.example.com") != first {
		t.Fatalf("two hostnames with one effective setting, checked by the API first: %d compiled, want the 1 the check compiled, shared", len(w.cache))
	}
	delete(recs, "a.example.com")
	delete(recs, "b.example.com")
	w.apply(recs)
	if len(w.cache) != 0 {
		t.Errorf("no hostname left: %d engines kept, want 0", len(w.cache))
	}
}
