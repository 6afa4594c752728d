package ingress_test

import (
	"fmt"

	"github.com/adit-dev/adit/ingress"
)

func Example() {
	cfg, err := ingress.Parse([]byte(`
tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
credentials-file: /root/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json
originRequest:
  connectTimeout: 10s
ingress:
  - hostname: app.example.com
    path: ^/api/
    service: http://localhost:8000
    originRequest:
      httpHostHeader: api.internal
  - hostname: "*.example.com"
    service: unix:/run/web.sock
  - service: http_status:404
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	in, err := ingress.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, req := range [][2]string{
		{"app.example.com:443", "/api/users"},
		{"APP.example.com", "/"},
		{"example.com", "/"},
	} {
		i, r := in.Match(req[0], req[1])
		fmt.Printf("%s%s -> rule %d: %s (%s, Host %q)\n", req[0], req[1], i+1, r.Service, r.Service.Kind, r.Origin.HTTPHostHeader)
	}
	fmt.Println(in.Rules[0].Origin.ConnectTimeout, in.Rules[0].Origin.TLSTimeout)
	// Output:
	// app.example.com:443/api/users -> rule 1: http://localhost:8000 (http, Host "api.internal")
	// APP.example.com/ -> rule 2: unix:/run/web.sock (unix, Host "")
	// example.com/ -> rule 3: http_status:404 (http_status, Host "")
	// 10s 10s
}
