package ingress

import (
	"fmt"
	"testing"
)

// manyRules builds n rules in four kinds, round robin: an exact hostname, a
// wildcard, an exact hostname with a path regexp, and a path regexp alone
// (which every request that reaches it must run); then the catch-all.
// It returns requests whose first match is the first rule, the middle rule
// and the catch-all (which every rule before it has to reject).
func manyRules(tb testing.TB, n int) (in *Ingress, best, middle, worst [2]string) {
	tb.Helper()
	cfg := &Config{}
	req := func(i int) [2]string {
		switch i % 4 {
		case 0:
			return [2]string{fmt.Sprintf("app-%d.example.com", i), "/"}
		case 1:
			return [2]string{fmt.Sprintf("x.y.zone-%d.example.net:443", i), "/index.html"}
		case 2:
			return [2]string{fmt.Sprintf("api-%d.example.org", i), fmt.Sprintf("/v%d/users/42", i)}
		default:
			return [2]string{"any.example.io", fmt.Sprintf("/static-%d/app.js", i)}
		}
	}
	for i := range n {
		r := RuleConfig{Service: fmt.Sprintf("http://127.0.0.1:%d", 10000+i)}
		switch i % 4 {
		case 0:
			r.Hostname = fmt.Sprintf("app-%d.example.com", i)
		case 1:
			r.Hostname = fmt.Sprintf("*.zone-%d.example.net", i)
		case 2:
			// The path is the rule's last check: it runs only for its host.
			r.Hostname = fmt.Sprintf("api-%d.example.org", i)
			r.Path = fmt.Sprintf("^/v%d/", i)
		default:
			r.Path = fmt.Sprintf("^/static-%d/", i)
		}
		cfg.Ingress = append(cfg.Ingress, r)
	}
	cfg.Ingress = append(cfg.Ingress, RuleConfig{Service: "http_status:404"})
	in, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return in, req(0), req(n / 2), [2]string{"unrouted.example.com", "/v1/users/42"}
}

// BenchmarkMatchManyRules matches among 10, 100 and 1,000 rules: the best
// case (the first rule), the middle rule, and the worst case (a host no
// rule names, which falls through to the catch-all).
func BenchmarkMatchManyRules(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		in, best, middle, worst := manyRules(b, n)
		for _, c := range []struct {
			name string
			req  [2]string
			want int
		}{
			{"best", best, 0},
			{"middle", middle, n / 2},
			{"worst", worst, n},
		} {
			b.Run(fmt.Sprintf("rules=%d/%s", n, c.name), func(b *testing.B) {
				if i, _ := in.Match(c.req[0], c.req[1]); i != c.want {
					b.Fatalf("Match(%q, %q) = rule %d, want %d", c.req[0], c.req[1], i, c.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					in.Match(c.req[0], c.req[1])
				}
			})
		}
	}
}
