package edgeview

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/internal/poll"
	"github.com/adit-dev/adit/internal/store"
)

// recorder keeps what a subscriber was handed.
type recorder struct {
	mu   sync.Mutex
	sets []Edges
}

func (r *recorder) add(e Edges) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, e)
}

// last is the names of the last set handed, sorted, and how many sets.
func (r *recorder) last() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil, 0
	}
	return slices.Sorted(maps.Keys(r.sets[len(r.sets)-1])), len(r.sets)
}

func waitNames(t *testing.T, what string, r *recorder, want ...string) int {
	t.Helper()
	var n int
	poll.Until(t, what, func() bool {
		var got []string
		got, n = r.last()
		return slices.Equal(got, want)
	})
	return n
}

// TestView: one watch, fanned out. Subscribers get the registry at once
// and every change after it, in order; a malformed record (bad JSON, a
// name that is not its key's, too large) is left out; stop ends the
// calls.
func TestView(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cli := st.Client()
	ctx, cancel := context.WithCancel(context.Background())
	put := func(key, val string) {
		t.Helper()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	rec := func(name string) string {
		b, _ := json.Marshal(control.EdgeNode{Name: name, Health: control.EdgeHealthOK})
		return string(b)
	}
	put(store.EdgeKey("a"), rec("a"))

	v, err := New(ctx, cli, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-v.Done() })
	var one, two recorder
	stop1 := v.Subscribe(one.add)
	if got, n := one.last(); !slices.Equal(got, []string{"a"}) || n != 1 {
		t.Fatalf("first call: %v after %d calls; want [a] at once", got, n)
	}
	stop2 := v.Subscribe(two.add)
	defer stop2()

	put(store.EdgeKey("b"), rec("b"))
	waitNames(t, "b added", &one, "a", "b")
	put(store.EdgeKey("bad"), "{not json")
	put(store.EdgeKey("liar"), rec("someone-else"))
	put(store.EdgeKey("huge"), strings.Replace(rec("huge"), `"region":""`, `"region":"`+strings.Repeat("x", maxRecord)+`"`, 1))
	put(store.EdgeKey("c"), rec("c"))
	waitNames(t, "c added, the malformed ones left out", &one, "a", "b", "c")
	if _, err := cli.Delete(ctx, store.EdgeKey("a")); err != nil {
		t.Fatal(err)
	}
	n := waitNames(t, "a deleted", &one, "b", "c")
	waitNames(t, "a deleted, second subscriber", &two, "b", "c")
	if got := slices.Sorted(maps.Keys(v.Edges())); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("Edges: %v", got)
	}
	// Every change in order: the sets grow, then shrink, never go back.
	one.mu.Lock()
	for i := 1; i < len(one.sets); i++ {
		_, hadA := one.sets[i-1]["a"]
		_, hasA := one.sets[i]["a"]
		if hasA && !hadA {
			t.Errorf("set %d has a again after it was gone", i)
		}
	}
	one.mu.Unlock()

	stop1()
	put(store.EdgeKey("d"), rec("d"))
	waitNames(t, "d added, second subscriber", &two, "b", "c", "d")
	if _, m := one.last(); m != n {
		t.Errorf("a stopped subscriber was called %d more times", m-n)
	}
}

// TestFixed: a Fixed registry hands its edges once.
func TestFixed(t *testing.T) {
	var r recorder
	Fixed{"a": {Name: "a"}}.Subscribe(r.add)()
	if got, n := r.last(); !slices.Equal(got, []string{"a"}) || n != 1 {
		t.Errorf("got %v after %d calls", got, n)
	}
}
