package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	"github.com/corazawaf/coraza/v3"
	txhttp "github.com/corazawaf/coraza/v3/http"
	"github.com/corazawaf/coraza/v3/types"
	"gopkg.in/yaml.v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge"
)

// The OWASP Core Rule Set's regression suite (its tests/regression/tests,
// embedded in coraza-coreruleset/v4/tests) against the edge, the way the
// CRS project checks its engines in go-ftw's log mode: each test's
// requests are sent raw between two X-CRS-Test marker requests, and the
// rule IDs the WAF log (--waf-log) shows between the markers are checked
// against the test's expect_ids and no_expect_ids.
//
// The same runner first checks Coraza's own reference setup (the one its
// testing/coreruleset TestFTW uses: coraza.conf-recommended, the
// regression suite's setup rules, crs-setup, the CRS, behind Coraza's
// net/http middleware), and the test fails if a test that passes there
// fails through the edge. The edge runs the same setup rules as the
// operator would: `adit waf set localhost --mode block --paranoia 4` and
// the setup as `adit waf rules add --before-crs`.
//
// go-ftw itself is not on the Go module proxy, so this runner reads the
// suite's YAML directly. In CI it runs a subset of rule files
// (crsSubset); the whole request suite runs with
//
//	ADIT_CRS_FULL=1 go test ./e2e -run TestCRSRegression -v -timeout 60m
//
// The RESPONSE-* tests ask the backend for the answer to inspect (go-ftw's
// albedo, /reflect); the runner's origin answers them the same way
// (reflectAnswer). ADIT_CRS_ONLY=REGEXP (on the file's path, e.g.
// ^RESPONSE-) narrows a full run.

// crsSetup is the regression suite's setup (its README's rule 900005 and
// the X-CRS-Test marker rule), as Coraza's reference loads it before the
// CRS.
const crsSetup = `SecResponseBodyMimeType text/plain
SecDefaultAction "phase:3,log,auditlog,pass"
SecDefaultAction "phase:4,log,auditlog,pass"
SecDefaultAction "phase:5,log,auditlog,pass"
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,ctl:ruleRemoveById=910000,setvar:tx.blocking_paranoia_level=4,setvar:tx.crs_validate_utf8_encoding=1,setvar:tx.arg_name_length=100,setvar:tx.arg_length=400,setvar:tx.total_arg_length=64000,setvar:tx.max_num_args=255,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535"
SecRule REQUEST_HEADERS:X-CRS-Test "@rx ^.*$" "id:999999,phase:1,pass,t:none,log,msg:'X-CRS-Test %{MATCHED_VAR}',ctl:ruleRemoveById=1-999999"
`

// crsSubset are the rule files CI runs: some of every request family, and
// some response rules.
var crsSubset = regexp.MustCompile(`/(911100|913100|920170|920420|921110|930110|931100|932160|933150|934100|941110|942100|942140|943100|944100|950130|951220|953100)\.yaml$`)

type crsFile struct {
	RuleID int       `yaml:"rule_id"`
	Tests  []crsTest `yaml:"tests"`
}

type crsTest struct {
	TestID int        `yaml:"test_id"`
	Stages []crsStage `yaml:"stages"`
}

type crsStage struct {
	Input struct {
		Method              *string           `yaml:"method"`
		URI                 *string           `yaml:"uri"`
		Version             *string           `yaml:"version"`
		Headers             map[string]string `yaml:"headers"`
		Data                *string           `yaml:"data"`
		EncodedRequest      string            `yaml:"encoded_request"`
		AutocompleteHeaders *bool             `yaml:"autocomplete_headers"`
	} `yaml:"input"`
	Output struct {
		Status      any    `yaml:"status"`
		ExpectError *bool  `yaml:"expect_error"`
		Log         crsLog `yaml:"log"`
	} `yaml:"output"`
}

type crsLog struct {
	ExpectIDs    []int  `yaml:"expect_ids"`
	NoExpectIDs  []int  `yaml:"no_expect_ids"`
	MatchRegex   string `yaml:"match_regex"`
	NoMatchRegex string `yaml:"no_match_regex"`
}

// crsCase is one test of the suite.
type crsCase struct {
	name string // "942100-1"
	test crsTest
}

func loadCRS(t *testing.T, full bool) []crsCase {
	t.Helper()
	var only *regexp.Regexp
	if e := os.Getenv("ADIT_CRS_ONLY"); e != "" {
		only = regexp.MustCompile(e)
	}
	var cases []crsCase
	err := fs.WalkDir(crstests.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		if !full && !crsSubset.MatchString("/"+p) {
			return nil
		}
		if only != nil && !only.MatchString(p) {
			return nil
		}
		data, err := fs.ReadFile(crstests.FS, p)
		if err != nil {
			return err
		}
		var f crsFile
		if err := yaml.Unmarshal(data, &f); err != nil {
			t.Logf("crs: skipping %s: %v", p, err)
			return nil
		}
		base := strings.TrimSuffix(path.Base(p), ".yaml")
		for _, tc := range f.Tests {
			cases = append(cases, crsCase{name: base + "-" + strconv.Itoa(tc.TestID), test: tc})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// rawRequest builds a stage's request as the suite means it: the
// request line and headers as given, with the test client's completions
// (a form Content-Type and encoding for data, CRLF in multipart bodies,
// Connection: close, Content-Length) unless autocomplete_headers is false.
func rawRequest(in *crsStage) []byte {
	if in.Input.EncodedRequest != "" {
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(in.Input.EncodedRequest, "\n", ""))
		if err == nil {
			return b
		}
	}
	str := func(p *string, def string) string {
		if p == nil {
			return def
		}
		return *p
	}
	method, uri, version := str(in.Input.Method, "GET"), str(in.Input.URI, "/"), str(in.Input.Version, "HTTP/1.1")
	auto := in.Input.AutocompleteHeaders == nil || *in.Input.AutocompleteHeaders
	hdr := map[string]string{}
	var names []string
	for k, v := range in.Input.Headers {
		hdr[k] = v
		names = append(names, k)
	}
	has := func(name string) (string, bool) {
		for k, v := range hdr {
			if strings.EqualFold(k, name) {
				return k, v != "" || true
			}
		}
		return "", false
	}
	data := []byte(str(in.Input.Data, ""))
	if len(data) > 0 && auto {
		if _, ok := has("Content-Type"); !ok {
			hdr["Content-Type"] = "application/x-www-form-urlencoded"
			names = append(names, "Content-Type")
		}
		if k, _ := has("Content-Type"); hdr[k] == "application/x-www-form-urlencoded" {
			data = formEncode(data)
		}
	}
	if k, ok := has("Content-Type"); ok && strings.Contains(hdr[k], "multipart/form-data;") {
		data = bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	}
	if auto {
		if _, ok := has("Connection"); !ok {
			hdr["Connection"] = "close"
			names = append(names, "Connection")
		}
		if _, ok := has("Content-Length"); !ok && (len(data) > 0 || method == "POST" || method == "PUT" || method == "PATCH") {
			hdr["Content-Length"] = strconv.Itoa(len(data))
			names = append(names, "Content-Length")
		}
	}
	sort.Strings(names) // the YAML map has no order
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", method, uri, version)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\r\n", k, hdr[k])
	}
	b.WriteString("\r\n")
	b.Write(data)
	return b.Bytes()
}

// formEncode escapes the keys and values of a form body written plainly
// in the suite (unless it is escaped already).
func formEncode(data []byte) []byte {
	if u, err := url.QueryUnescape(string(data)); err != nil || u != string(data) {
		return data
	}
	var parts []string
	for _, kv := range strings.Split(string(data), "&") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		} else {
			parts = append(parts, url.QueryEscape(k))
		}
	}
	return []byte(strings.Join(parts, "&"))
}

// crsTarget is a server under test and the log its WAF writes.
type crsTarget struct {
	addr    string
	logFile string
	host    string // the Host of the marker requests
	off     int64  // how far the log has been read
}

// send writes raw to the target and returns the answer's status (0 if
// there was none).
func (tg *crsTarget) send(raw []byte) int {
	c, err := net.DialTimeout("tcp", tg.addr, 5*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(raw); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// mark sends a marker request and waits for its line in the log.
func (tg *crsTarget) mark(t *testing.T, id string) bool {
	raw := fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: adit CRS runner\r\nAccept: */*\r\nX-CRS-Test: %s\r\nConnection: close\r\n\r\n", tg.host, id)
	tg.send([]byte(raw))
	return waitWithin(5*time.Second, func() bool { return bytes.Contains(tg.tail(), []byte(id)) })
}

// tail returns the log past what has been read.
func (tg *crsTarget) tail() []byte {
	f, err := os.Open(tg.logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, tg.off, 1<<40))
	return b
}

var ruleIDRe = regexp.MustCompile(`\[id "(\d+)"\]`)

// run runs one test and reports whether it passed (and why not).
func (tg *crsTarget) run(t *testing.T, c crsCase, seq *int) (bool, string) {
	for si := range c.test.Stages {
		st := &c.test.Stages[si]
		*seq++
		start, end := fmt.Sprintf("crs-start-%d-%s", *seq, c.name), fmt.Sprintf("crs-end-%d-%s", *seq, c.name)
		if !tg.mark(t, start) {
			return false, "no start marker in the log"
		}
		status := tg.send(rawRequest(st))
		if !tg.mark(t, end) {
			return false, "no end marker in the log"
		}
		seg := tg.tail()
		tg.off += int64(len(seg))
		if i := bytes.Index(seg, []byte(start)); i >= 0 {
			seg = seg[i:]
			if j := bytes.IndexByte(seg, '\n'); j >= 0 {
				seg = seg[j+1:]
			}
		}
		if i := bytes.Index(seg, []byte(end)); i >= 0 {
			seg = seg[:i]
		}
		ids := map[int]bool{}
		for _, m := range ruleIDRe.FindAllSubmatch(seg, -1) {
			n, _ := strconv.Atoi(string(m[1]))
			ids[n] = true
		}
		out := st.Output
		if out.ExpectError != nil && *out.ExpectError {
			if status != 0 {
				return false, fmt.Sprintf("stage %d: want an error, got %d", si, status)
			}
			continue
		}
		for _, id := range out.Log.ExpectIDs {
			if !ids[id] {
				return false, fmt.Sprintf("stage %d: rule %d did not match", si, id)
			}
		}
		for _, id := range out.Log.NoExpectIDs {
			if ids[id] {
				return false, fmt.Sprintf("stage %d: rule %d matched", si, id)
			}
		}
		if out.Log.MatchRegex != "" {
			if re, err := regexp.Compile(out.Log.MatchRegex); err == nil && !re.Match(seg) {
				return false, fmt.Sprintf("stage %d: log does not match %q", si, out.Log.MatchRegex)
			}
		}
		if out.Log.NoMatchRegex != "" {
			if re, err := regexp.Compile(out.Log.NoMatchRegex); err == nil && re.Match(seg) {
				return false, fmt.Sprintf("stage %d: log matches %q", si, out.Log.NoMatchRegex)
			}
		}
		if out.Status != nil && fmt.Sprint(out.Status) != strconv.Itoa(status) {
			if l, ok := out.Status.([]any); !ok || !strings.Contains(fmt.Sprint(l), strconv.Itoa(status)) {
				return false, fmt.Sprintf("stage %d: status %d, want %v", si, status, out.Status)
			}
		}
	}
	return true, ""
}

// crsOrigin answers every request 200, as the suite's backend does by default.
func crsOrigin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reflect" && r.Method == http.MethodPost {
			reflectAnswer(w, r)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
}

// reflectAnswer answers what the request's JSON asks for, as go-ftw's
// backend (albedo) does for the suite's RESPONSE-* tests: {"status": N,
// "headers": {...}, "body": "...", "encodedBody": "base64"}.
func reflectAnswer(w http.ResponseWriter, r *http.Request) {
	var spec struct {
		Status      int               `json:"status"`
		Headers     map[string]string `json:"headers"`
		Body        string            `json:"body"`
		EncodedBody string            `json:"encodedBody"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := spec.Body
	if spec.EncodedBody != "" {
		b, err := base64.StdEncoding.DecodeString(spec.EncodedBody)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = string(b)
	}
	w.Header().Set("Content-Type", "text/plain")
	for k, v := range spec.Headers {
		w.Header().Set(k, v)
	}
	if spec.Status < 100 || spec.Status > 599 {
		spec.Status = http.StatusOK
	}
	w.WriteHeader(spec.Status)
	io.WriteString(w, body)
}

// referenceTarget is Coraza's reference setup for the suite, in process.
func referenceTarget(t *testing.T) *crsTarget {
	t.Helper()
	rec, err := fs.ReadFile(coreruleset.FS, "@coraza.conf-recommended")
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "reference.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var mu sync.Mutex
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().
		WithRootFS(coreruleset.FS).
		WithDirectives(string(rec)).
		WithDirectives(crsSetup).
		WithDirectives("Include @crs-setup.conf.example").
		WithDirectives("Include @owasp_crs/*.conf").
		WithErrorCallback(func(mr types.MatchedRule) {
			mu.Lock()
			defer mu.Unlock()
			io.WriteString(f, mr.ErrorLog()+"\n")
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(txhttp.WrapHandler(waf, crsOrigin()))
	t.Cleanup(srv.Close)
	return &crsTarget{addr: srv.Listener.Addr().String(), logFile: logFile, host: "localhost"}
}

// edgeTarget is an edge routing "localhost" to an origin, its WAF set up
// as an operator would for the suite.
func edgeTarget(t *testing.T) *crsTarget {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "waf.log")
	logs := &syncBuffer{}
	srv := startEdgeLogged(t, logs, func(c *edge.Config) {
		c.WAFLog = logFile
		c.Flood.NewConnsPerSecond = -1 // the runner opens a connection per request, fast
	})
	origin := httptest.NewServer(crsOrigin())
	t.Cleanup(origin.Close)
	tun := createTunnel(t, srv, "crs", "localhost")
	startConnector(t, srv, tun, mustIngress(t, origin.URL))
	api := shieldAPI(t, srv)
	ctx := t.Context()
	mode, paranoia, limit := control.WAFBlock, 4, int64(13107200)
	if _, err := api.SetWAF(ctx, "localhost", control.WAFSettings{Mode: &mode, Paranoia: &paranoia, BodyLimit: &limit}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.AddWAFRules(ctx, "localhost", control.WAFRules{Name: "crs-regression-setup.conf", Text: crsSetup, BeforeCRS: true}); err != nil {
		t.Fatal(err)
	}
	tg := &crsTarget{addr: srv.HTTPAddr().String(), logFile: logFile, host: "localhost"}
	// Ready once the setup rules apply: their rule 999999 logs the marker
	// too (adit's own marker line comes with the first setting already).
	n := 0
	waitFor(t, "the WAF setting and its setup rules on the edge", func() bool {
		n++
		id := "crs-ready-" + strconv.Itoa(n)
		return tg.mark(t, id) && bytes.Contains(tg.tail(), []byte(`[id "999999"]`))
	})
	return tg
}

func TestCRSRegression(t *testing.T) {
	full := os.Getenv("ADIT_CRS_FULL") != ""
	cases := loadCRS(t, full)
	if len(cases) == 0 {
		t.Fatal("no CRS tests found")
	}
	run := func(tg *crsTarget) (map[string]bool, map[string]string) {
		pass, why := map[string]bool{}, map[string]string{}
		seq := 0
		for _, c := range cases {
			ok, reason := tg.run(t, c, &seq)
			pass[c.name] = ok
			if !ok {
				why[c.name] = reason
			}
		}
		return pass, why
	}
	refPass, _ := run(referenceTarget(t))
	edgePass, edgeWhy := run(edgeTarget(t))

	nRef, nEdge, nHost := 0, 0, 0
	var lost []string
	for _, c := range cases {
		if !routedHost(c.test) {
			// The edge routes by Host before any layer: a request for
			// another name (an IP, none) gets the 404 of an unknown
			// hostname, never a hostname's WAF.
			nHost++
			continue
		}
		if refPass[c.name] {
			nRef++
		}
		if edgePass[c.name] {
			nEdge++
		}
		if refPass[c.name] && !edgePass[c.name] {
			lost = append(lost, c.name+" ("+edgeWhy[c.name]+")")
		}
	}
	t.Logf("CRS regression suite (%d tests%s; %d for another Host left out): Coraza's reference setup passes %d, the edge passes %d",
		len(cases)-nHost, map[bool]string{true: ", all", false: ", the CI subset"}[full], nHost, nRef, nEdge)
	for _, l := range lost {
		t.Errorf("passes on Coraza's reference setup, fails through the edge: %s", l)
	}
}

// routedHost reports whether every stage of a test asks for the routed
// hostname, localhost.
func routedHost(tc crsTest) bool {
	for _, st := range tc.Stages {
		raw := rawRequest(&st)
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			// Malformed: the edge and the reference both answer 400 from net/http.
			continue
		}
		if h, _, _ := strings.Cut(req.Host, ":"); !strings.EqualFold(h, "localhost") {
			return false
		}
	}
	return true
}

// shieldAPI is an API client of an in-process edge.
func shieldAPI(t *testing.T, srv *edge.Server) *control.Client {
	t.Helper()
	token, err := os.ReadFile(srv.AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	c, err := control.NewClient(srv.APIURL(), strings.TrimSpace(string(token)), srv.CAPEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}
