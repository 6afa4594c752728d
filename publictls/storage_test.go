package publictls

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/adit-dev/adit/internal/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestEtcdStorage: certmagic's Storage contract over a real etcd.
func TestEtcdStorage(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	s := newEtcdStorage(st.Client(), "/test/acme/", "/test/locks/")
	defer s.close()

	if _, err := s.Load(ctx, "certificates/x/a.test/a.test.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key = %v, want fs.ErrNotExist", err)
	}
	before := time.Now()
	for _, k := range []string{"certificates/x/a.test/a.test.crt", "certificates/x/a.test/a.test.key", "certificates/x/b.test/b.test.crt", "acme/account.json"} {
		if err := s.Store(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := s.Load(ctx, "certificates/x/a.test/a.test.crt"); err != nil || string(b) != "value of certificates/x/a.test/a.test.crt" {
		t.Errorf("Load = %q, %v", b, err)
	}
	if !s.Exists(ctx, "certificates/x") || !s.Exists(ctx, "acme/account.json") || s.Exists(ctx, "certificates/y") {
		t.Error("Exists is wrong for a directory, a file or a missing key")
	}
	info, err := s.Stat(ctx, "certificates/x/b.test/b.test.crt")
	if err != nil || !info.IsTerminal || info.Size != int64(len("value of certificates/x/b.test/b.test.crt")) || info.Modified.Before(before.Add(-time.Second)) {
		t.Errorf("Stat = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "certificates/x"); err != nil || info.IsTerminal {
		t.Errorf("Stat of a directory = %+v, %v; want a non-terminal key", info, err)
	}
	got, err := s.List(ctx, "certificates/x", false)
	slices.Sort(got)
	if want := []string{"certificates/x/a.test", "certificates/x/b.test"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("List = %v, %v; want %v", got, err, want)
	}
	got, _ = s.List(ctx, "certificates", true)
	slices.Sort(got)
	want := []string{"certificates/x", "certificates/x/a.test", "certificates/x/a.test/a.test.crt", "certificates/x/a.test/a.test.key",
		"certificates/x/b.test", "certificates/x/b.test/b.test.crt"}
	if !slices.Equal(got, want) {
		t.Errorf("recursive List = %v, want %v", got, want)
	}
	if err := s.Delete(ctx, "certificates/x/a.test"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/x/a.test/a.test.key") || !s.Exists(ctx, "certificates/x/b.test/b.test.crt") {
		t.Error("Delete of a directory removed the wrong keys")
	}
	if err := s.Delete(ctx, "nothing/here"); err != nil {
		t.Errorf("Delete of a missing key = %v, want nil", err)
	}
}

// TestEtcdStorageLock: a lock is held by one edge at a time; another's
// Lock waits for the Unlock.
func TestEtcdStorageLock(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	a := newEtcdStorage(st.Client(), "/test/acme/", "/test/locks/")
	b := newEtcdStorage(st.Client(), "/test/acme/", "/test/locks/")
	defer a.close()
	defer b.close()
	if err := a.Lock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_app.test") }()
	select {
	case err := <-got:
		t.Fatalf("a second Lock returned (%v) while the first was held", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Unlock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second Lock did not get the lock after Unlock")
	}
	if err := b.Unlock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatal(err)
	}
	// Within one edge too (its two certmagic configurations share a
	// storage, and an etcd session does not exclude itself).
	if err := a.Lock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := a.Lock(short, "issue_cert_app.test"); err == nil {
		t.Fatal("a second Lock on the same storage got the lock while it was held")
	}
	if err := a.Unlock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctx, "issue_cert_app.test"); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	a.Unlock(ctx, "issue_cert_app.test")
	if err := b.Unlock(ctx, "issue_cert_app.test"); err == nil {
		t.Error("Unlock of a lock not held succeeded")
	}
}
