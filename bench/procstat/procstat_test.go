package procstat

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Times
		ok       bool
	}{
		{"plain", "1234 (adit) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1", Times{2500 * time.Millisecond, 500 * time.Millisecond}, true},
		{"name with spaces and parens", "99 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1", Times{70 * time.Millisecond, 30 * time.Millisecond}, true},
		{"truncated", "1 (x) S 1 2 3", Times{}, false},
		{"no name", "1 x S", Times{}, false},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 3 0", Times{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("got %v, %v; want %v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestSelf reads this process's own files.
func TestSelf(t *testing.T) {
	for x := 0; x < 10_000_000; x++ { // some CPU time to read
		_ = x * x
	}
	if d, err := CPU(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("CPU(self) = %v, %v; want > 0", d, err)
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("RSS(self) = %d, %v; want > 0", rss, err)
	}
	SettleRSS(context.Background(), []int{os.Getpid()}, time.Second)
}

func FuzzParseStat(f *testing.F) {
	f.Add("1234 (adit) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 1 1")
	f.Add("99 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0")
	f.Add("1 (x) S")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseStat(s)
		if err == nil && (c.User < 0 || c.System < 0) && !strings.Contains(s, "-") {
			t.Fatalf("ParseStat(%q) = %v: negative without a minus sign", s, c)
		}
	})
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Mem
		ok       bool
	}{
		{"both", "Name:\tadit\nVmRSS:\t   23140 kB\nRssAnon:\t    3324 kB\nRssFile:\t19816 kB\n", Mem{RSS: 23140 << 10, Anon: 3324 << 10}, true},
		{"no RssAnon (old kernel)", "VmRSS:\t100 kB\n", Mem{RSS: 100 << 10}, true},
		{"no VmRSS (kernel thread)", "Name:\tkthreadd\n", Mem{}, false},
		{"odd unit", "VmRSS:\t100 MB\n", Mem{}, false},
		{"negative", "VmRSS:\t-100 kB\n", Mem{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tc.in))
			if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
				t.Errorf("got %+v, %v; want %+v, ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmRSS:\t   23140 kB\nRssAnon:\t    3324 kB\n"))
	f.Add([]byte("VmRSS: 1 kB"))
	f.Add([]byte("RssAnon:\t5 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseStatus(b)
		if err == nil && (m.RSS < 0 || m.Anon < 0) {
			t.Fatalf("ParseStatus(%q) = %+v: negative", b, m)
		}
	})
}
