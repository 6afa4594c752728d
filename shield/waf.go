package shield

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"github.com/corazawaf/coraza/v3/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/edge/layer"
	"github.com/adit-dev/adit/internal/logs"
	"github.com/adit-dev/adit/internal/store"
)

// WAFConfig configures the WAF of one edge (the per-hostname settings
// are control.WAFConfig records in etcd).
type WAFConfig struct {
	// LogFile, if set, is the file every matched rule is appended to, one
	// line each in ModSecurity's error-log shape (waflog.go): the edge's
	// --waf-log. It is created with mode 0640.
	LogFile string
}

// WAF is the layer of the web application firewall: Coraza with the
// OWASP Core Rule Set, per hostname, in block or detect mode.
//
// The rules of a setting are compiled once, when the setting is stored,
// and the compiled WAF is shared by every hostname whose setting has the
// same effect: engines are keyed by their directives (Directives), which
// leave out the hostname, the record's IDs, names and times, so 50
// hostnames with one setting (or the same rules file added to each) hold
// one compiled CRS. Each change rebuilds the index from every setting and
// frees the engines no hostname uses any more. A request only creates a
// transaction. In block mode the request body is read (up to its
// limit) and inspected before anything goes down the tunnel; in detect
// mode it streams to the origin as before and is inspected as it passes.
type WAF struct {
	log     *slog.Logger
	elog    *errorLog // nil without WAFConfig.LogFile
	logFile *os.File
	idx     atomic.Pointer[wafIndex]
	mu      sync.Mutex         // serializes apply; guards engines
	cache   map[string]*engine // by directives
	done    <-chan struct{}
	cancel  func()

	blocked, blockedResponse, detected, bodyLimit, errs prometheus.Counter
}

var _ layer.Layer = (*WAF)(nil)

// engine is one compiled setting.
type engine struct {
	cfg  control.WAFConfig
	waf  coraza.WAF // nil when Mode is off
	text string
}

// NewWAF loads the WAF settings, compiles their rules and watches them.
func NewWAF(deps layer.Deps, cfg WAFConfig) (*WAF, error) {
	d, err := newDecisions(deps.Metrics, "waf", "Requests the WAF judged, by reason: blocked, blocked_response (the answer was refused), detected (detect mode; would have been blocked), body_limit (blocked for a body over the limit), error.")
	if err != nil {
		return nil, err
	}
	w := &WAF{log: logs.Component(deps.Logger, "shield").With("layer", "waf"), cache: map[string]*engine{},
		blocked: d.counter("blocked"), blockedResponse: d.counter("blocked_response"), detected: d.counter("detected"), bodyLimit: d.counter("body_limit"), errs: d.counter("error")}
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("shield: waf log: %w", err)
		}
		w.logFile = f
		w.elog = newErrorLog(f)
	}
	ctx, cancel := contextFrom(deps.Ctx)
	w.cancel = cancel
	w.done, err = watchPrefix(ctx, deps.Etcd, store.WAFPrefix, w.log, w.apply)
	if err != nil {
		cancel()
		if w.logFile != nil {
			w.logFile.Close()
		}
		return nil, err
	}
	return w, nil
}

// Name implements layer.Layer.
func (w *WAF) Name() string { return "waf" }

// Close implements layer.Layer.
func (w *WAF) Close() error {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, e := range w.cache {
		closeEngine(e)
		delete(w.cache, k)
	}
	if w.logFile != nil {
		return w.logFile.Close()
	}
	return nil
}

func closeEngine(e *engine) {
	if c, ok := e.waf.(experimental.WAFCloser); ok {
		c.Close()
	}
}

// wafIndex is the compiled settings by hostname, immutable once built.
type wafIndex struct {
	hosts map[string]*engine
	wild  map[string]*engine // "*.example.com" under "example.com"
	all   *engine            // AllHosts; nil if none
}

func (x *wafIndex) forHost(host string) *engine {
	if e := x.hosts[host]; e != nil {
		return e
	}
	if len(x.wild) > 0 {
		if i := strings.IndexByte(host, '.'); i >= 0 {
			if e := x.wild[host[i+1:]]; e != nil {
				return e
			}
		}
	}
	return x.all
}

func (w *WAF) apply(recs map[string][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	idx := &wafIndex{hosts: map[string]*engine{}, wild: map[string]*engine{}}
	used := map[string]bool{}
	for k, v := range recs {
		var c control.WAFConfig
		if err := json.Unmarshal(v, &c); err != nil || c.Validate() != nil {
			w.log.Warn("skipping an unreadable waf setting", "key", k)
			continue
		}
		text := Directives(c)
		e := w.cache[text]
		if e == nil {
			var err error
			e, err = w.compile(c, text)
			if err != nil {
				w.log.Error("waf setting does not compile; the hostname has no WAF", "host", c.Hostname, "err", err)
				continue
			}
			w.cache[text] = e
		}
		used[text] = true
		switch h := c.Hostname; {
		case h == control.AllHosts:
			idx.all = e
		case strings.HasPrefix(h, "*."):
			idx.wild[h[2:]] = e
		default:
			idx.hosts[h] = e
		}
	}
	w.idx.Store(idx)
	for text, e := range w.cache {
		if !used[text] {
			closeEngine(e) // in-flight transactions keep what they use
			delete(w.cache, text)
		}
	}
}

// compile builds the engine of a setting.
func (w *WAF) compile(c control.WAFConfig, text string) (*engine, error) {
	e := &engine{cfg: c, text: text}
	if c.Mode == control.WAFOff {
		return e, nil
	}
	conf := coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(text)
	if w != nil && w.elog != nil {
		conf = conf.WithErrorCallback(w.elog.rule)
	}
	waf, err := coraza.NewWAF(conf)
	if err != nil {
		return nil, err
	}
	e.waf = waf
	return e, nil
}

// Check compiles a setting as the watch will, for the API to refuse rules
// that do not compile, and keeps the result: the setting the API then
// stores is not compiled a second time on this edge (an engine no setting
// takes up is freed by the next change).
func (w *WAF) Check(c control.WAFConfig) error {
	text := Directives(c)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cache[text] != nil {
		return nil
	}
	e, err := w.compile(c, text)
	if err != nil {
		return fmt.Errorf("the rules do not compile: %w", err)
	}
	w.cache[text] = e
	return nil
}

// CheckWAF compiles a setting as an edge would, for the API to refuse
// rules that do not compile.
func CheckWAF(c control.WAFConfig) error {
	e, err := (*WAF)(nil).compile(c, Directives(c))
	if err != nil {
		return fmt.Errorf("the rules do not compile: %w", err)
	}
	closeEngine(e)
	return nil
}

// IDs of the rules Directives writes itself.
const (
	setupRuleID     = 8_000_001
	exclusionRuleID = 8_000_100 // + the exclusion's index
)

// Directives is the SecLang of a setting, in the order ModSecurity setups
// load theirs: Coraza's recommended configuration with the setting's
// engine mode and body limit, the CRS's tx. variables (paranoia,
// thresholds), the operator's rules marked BeforeCRS, the exclusions by
// path, the CRS's setup and rules, the operator's other rules, and the
// exclusions of every path (last, so they remove any rule defined above).
func Directives(c control.WAFConfig) string {
	var b strings.Builder
	engine := "On"
	if c.Mode == control.WAFDetect {
		engine = "DetectionOnly"
	}
	action := "Reject"
	if c.BodyLimitAction == control.BodyLimitPartial {
		action = "ProcessPartial"
	}
	// Coraza rejects a body of exactly SecRequestBodyLimit bytes: one
	// more, so BodyLimit bytes pass.
	limit := c.BodyLimit + 1
	fmt.Fprintf(&b, `Include @coraza.conf-recommended
SecRuleEngine %s
SecRequestBodyAccess On
SecRequestBodyLimit %d
SecRequestBodyInMemoryLimit %d
SecRequestBodyLimitAction %s
SecResponseBodyAccess On
SecResponseBodyMimeType %s
SecResponseBodyLimit %d
SecResponseBodyLimitAction ProcessPartial
SecAuditEngine Off
SecAction "id:%d,phase:1,pass,nolog,t:none,setvar:tx.blocking_paranoia_level=%d,setvar:tx.inbound_anomaly_score_threshold=%d,setvar:tx.outbound_anomaly_score_threshold=%d"
`, engine, limit, limit, action, respMimeTypes, c.ResponseBodyLimit+1, setupRuleID, c.Paranoia, c.InboundThreshold, c.OutboundThreshold)
	for _, r := range c.Rules {
		if r.BeforeCRS {
			fmt.Fprintf(&b, "# operator rules, before the CRS\n%s\n", r.Text)
		}
	}
	for i, e := range c.Exclusions {
		if e.Path != "" {
			fmt.Fprintf(&b, "SecRule REQUEST_FILENAME \"@rx %s\" \"id:%d,phase:1,pass,nolog,t:none,ctl:ruleRemoveById=%d\"\n",
				e.Path, exclusionRuleID+i, e.Rule)
		}
	}
	b.WriteString("Include @crs-setup.conf.example\nInclude @owasp_crs/*.conf\n")
	for _, r := range c.Rules {
		if !r.BeforeCRS {
			fmt.Fprintf(&b, "# operator rules\n%s\n", r.Text)
		}
	}
	for _, e := range c.Exclusions {
		if e.Path == "" {
			fmt.Fprintf(&b, "SecRuleRemoveById %d\n", e.Rule)
		}
	}
	return b.String()
}

// Wrap implements layer.Layer.
func (w *WAF) Wrap(next layer.Handler) layer.Handler {
	return layer.HandlerFunc(func(rw http.ResponseWriter, r *http.Request, req *layer.Request) {
		idx := w.idx.Load()
		if idx == nil {
			next.ServeRouted(rw, r, req)
			return
		}
		e := idx.forHost(req.Host)
		if e == nil || e.waf == nil {
			next.ServeRouted(rw, r, req)
			return
		}
		w.serve(e, next, rw, r, req)
	})
}

func (w *WAF) serve(e *engine, next layer.Handler, rw http.ResponseWriter, r *http.Request, req *layer.Request) {
	tx := e.waf.NewTransactionWithID(req.ID)
	var marker string
	if w.elog != nil {
		marker = r.Header.Get(crsTestHeader)
	}
	defer func() {
		tx.ProcessLogging()
		if marker != "" {
			w.elog.marker(req, marker)
		}
		tx.Close()
	}()
	port := 0
	if i := strings.LastIndexByte(req.ClientAddr, ':'); i >= 0 {
		port, _ = strconv.Atoi(req.ClientAddr[i+1:])
	}
	tx.ProcessConnection(req.ClientIP.String(), port, "", 0)
	tx.ProcessURI(r.RequestURI, r.Method, r.Proto)
	for k, vv := range r.Header {
		for _, v := range vv {
			tx.AddRequestHeader(k, v)
		}
	}
	if r.Host != "" {
		tx.AddRequestHeader("Host", r.Host)
		tx.SetServerName(req.Host)
	}
	for _, te := range r.TransferEncoding {
		tx.AddRequestHeader("Transfer-Encoding", te)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		w.refuse(e, rw, r, req, tx, it)
		return
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody && e.cfg.Mode == control.WAFDetect {
		// Detect mode: the body streams on and is inspected as it goes.
		tee := &teeBody{ReadCloser: r.Body, tx: tx}
		r.Body = tee
		w.forward(e, next, rw, r, req, tx, tee)
		return
	}
	if hasBody && tx.IsRequestBodyAccessible() {
		it, _, err := tx.ReadRequestBodyFrom(r.Body)
		if err != nil {
			w.errs.Inc()
			layer.Refuse(rw, r, req, http.StatusBadRequest, "Bad request", "The request body could not be read.")
			return
		}
		if it != nil {
			w.refuse(e, rw, r, req, tx, it)
			return
		}
		rbr, err := tx.RequestBodyReader()
		if err != nil {
			w.errs.Inc()
			w.log.Error("waf body buffer", "request_id", req.ID, "err", err)
			layer.Refuse(rw, r, req, http.StatusInternalServerError, "WAF error", "The WAF could not inspect this request.")
			return
		}
		r.Body = bodyWith{Reader: io.MultiReader(rbr, r.Body), Closer: r.Body}
	}
	it, err := tx.ProcessRequestBody()
	if err != nil {
		w.errs.Inc()
		w.log.Error("waf body processing", "request_id", req.ID, "err", err)
	}
	if it != nil {
		w.refuse(e, rw, r, req, tx, it)
		return
	}
	w.forward(e, next, rw, r, req, tx, nil)
}

// forward passes a request the WAF let through on, with the answer going
// through the response phases (wafresp.go). In detect mode, once the
// answer is out, the request's body phase runs on what was streamed (tee,
// when there was a body), and a request or answer that would have been
// blocked is logged once.
func (w *WAF) forward(e *engine, next layer.Handler, rw http.ResponseWriter, r *http.Request, req *layer.Request, tx types.Transaction, tee *teeBody) {
	ri := newRespInspector(w, e, rw, r, req, tx)
	if tee != nil {
		ri.requestDone = func() { tee.finish() }
	}
	done := false
	defer func() {
		ri.finish(done)
		if tee != nil {
			tee.finish()
		}
		if done && e.cfg.Mode == control.WAFDetect {
			w.noteDetected(e, req, tx)
		}
	}()
	next.ServeRouted(ri, r, req)
	done = true
}

// bodyWith is a request body read from Reader and closed by Closer.
type bodyWith struct {
	io.Reader
	io.Closer
}

// refuse answers a request the WAF interrupted, and logs it once with
// the IDs of the rules it matched.
func (w *WAF) refuse(e *engine, rw http.ResponseWriter, r *http.Request, req *layer.Request, tx types.Transaction, it *types.Interruption) {
	status := it.Status
	if status < 400 || status > 599 {
		status = http.StatusForbidden
	}
	ids := matchedIDs(tx)
	if status == http.StatusRequestEntityTooLarge {
		w.bodyLimit.Inc()
		w.log.Info("waf refused a body over its limit", "host", req.Host, "request_id", req.ID, "client", req.ClientAddr, "limit", e.cfg.BodyLimit)
		layer.Refuse(rw, r, req, status, "Request body too large",
			fmt.Sprintf("The request body is longer than the %d bytes the firewall of %s inspects.", e.cfg.BodyLimit, req.Host))
		return
	}
	w.blocked.Inc()
	w.log.Info("waf blocked a request", "host", req.Host, "request_id", req.ID, "client", req.ClientAddr,
		"method", r.Method, "path", r.URL.Path, "rules", ids, "rule", it.RuleID, "status", status)
	layer.Refuse(rw, r, req, status, "Blocked by the web application firewall",
		"The firewall of "+req.Host+" blocked this request. If you think it should not have, give the site's owner the request ID below.")
}

// noteDetected logs, in detect mode, a request the WAF would have blocked.
func (w *WAF) noteDetected(e *engine, req *layer.Request, tx types.Transaction) {
	d, ok := tx.(interface{ DetectionOnlyInterruption() *types.Interruption })
	if !ok {
		return
	}
	it := d.DetectionOnlyInterruption()
	if it == nil {
		return
	}
	w.detected.Inc()
	w.log.Info("waf would have blocked a request (detect mode)", "host", req.Host, "request_id", req.ID,
		"client", req.ClientAddr, "rules", matchedIDs(tx), "rule", it.RuleID)
}

// matchedIDs returns the IDs of the rules a transaction matched that
// carry a message (the CRS's bookkeeping rules have none).
func matchedIDs(tx types.Transaction) []int {
	var ids []int
	for _, mr := range tx.MatchedRules() {
		if mr.Message() != "" {
			ids = append(ids, mr.Rule().ID())
		}
	}
	return ids
}

// teeBody feeds a detect-mode transaction the body as the proxy reads
// it; finish, once the handler is done, runs the body phase on what was
// seen. The transaction is only touched under mu, and never after finish.
type teeBody struct {
	io.ReadCloser
	tx   types.Transaction
	mu   sync.Mutex
	done bool
	full bool // the body limit was reached; the rest is not inspected
	eof  bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.mu.Lock()
	if !t.done && !t.full && n > 0 {
		if _, _, werr := t.tx.WriteRequestBody(p[:n]); werr != nil {
			t.full = true
		}
	}
	if errors.Is(err, io.EOF) {
		t.eof = true
	}
	t.mu.Unlock()
	return n, err
}

// finish runs the body phase and reports whether it ran.
func (t *teeBody) finish() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.tx.ProcessRequestBody()
	return true
}
