package shield

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
)

// Bounds on the records the API stores.
const (
	maxIPRules    = 10_000
	maxRateLimits = 1_000
	maxWAFBody    = 512 << 10 // a rules file (256 KiB) in JSON
)

// Endpoints are the shield's /v1 API endpoints (docs/openapi.yaml), for
// the edge to serve behind its admin token: IP rules, rate limits and
// WAF settings, stored in etcd through cli. Rules added to a WAF setting
// are compiled first (refused if they do not compile) by waf, which keeps
// the result for the setting it will see stored; without one (nil), on
// their own.
func Endpoints(cli *clientv3.Client, waf *WAF) []controlserver.Endpoint {
	a := &api{cli: cli, check: CheckWAF}
	if waf != nil {
		a.check = waf.Check
	}
	return []controlserver.Endpoint{
		{Pattern: "POST /v1/ip-rules", Handle: a.addIPRule},
		{Pattern: "GET /v1/ip-rules", Handle: a.listIPRules},
		{Pattern: "DELETE /v1/ip-rules/{id}", Handle: a.deleteRecord(store.IPRulesPrefix, "ip rule")},
		{Pattern: "POST /v1/rate-limits", Handle: a.addRateLimit},
		{Pattern: "GET /v1/rate-limits", Handle: a.listRateLimits},
		{Pattern: "DELETE /v1/rate-limits/{id}", Handle: a.deleteRecord(store.RateLimitsPrefix, "rate limit")},
		{Pattern: "GET /v1/waf", Handle: a.listWAF},
		{Pattern: "GET /v1/waf/{hostname}", Handle: a.getWAF},
		{Pattern: "PATCH /v1/waf/{hostname}", Handle: a.setWAF},
		{Pattern: "DELETE /v1/waf/{hostname}", Handle: a.deleteWAF},
		{Pattern: "POST /v1/waf/{hostname}/exclusions", Handle: a.addExclusion},
		{Pattern: "DELETE /v1/waf/{hostname}/exclusions/{id}", Handle: a.deleteExclusion},
		{Pattern: "POST /v1/waf/{hostname}/rules", Handle: a.addRules},
		{Pattern: "DELETE /v1/waf/{hostname}/rules/{id}", Handle: a.deleteRules},
	}
}

type api struct {
	cli   *clientv3.Client
	check func(control.WAFConfig) error // compiles a WAF setting
}

// newID returns a record ID: 12 hex digits.
func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func decode(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &controlserver.APIError{Status: http.StatusRequestEntityTooLarge, Code: "invalid", Msg: fmt.Sprintf("request body is larger than %d bytes", limit)}
	case err != nil:
		return &controlserver.APIError{Status: http.StatusBadRequest, Code: "invalid", Msg: "request body: " + err.Error()}
	}
	return nil
}

// create stores a new record under prefix+id, if fewer than max are stored.
func (a *api) create(ctx context.Context, prefix, id string, v any, limit int64, what string) error {
	n, err := a.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("shield: counting %ss: %w", what, err)
	}
	if n.Count >= limit {
		return control.Errorf(control.ErrConflict, "there are %d %ss, the limit is %d", n.Count, what, limit)
	}
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	key := prefix + id
	resp, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("shield: storing %s: %w", what, err)
	}
	if !resp.Succeeded {
		return control.Errorf(control.ErrConflict, "%s %s exists", what, id)
	}
	return nil
}

func list[T any](ctx context.Context, cli *clientv3.Client, prefix string, keep func(T) bool) ([]T, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("shield: listing %s: %w", prefix, err)
	}
	out := []T{}
	for _, kv := range resp.Kvs {
		var v T
		if json.Unmarshal(kv.Value, &v) == nil && (keep == nil || keep(v)) {
			out = append(out, v)
		}
	}
	return out, nil
}

// hostParam reads the optional ?hostname= of a list.
func hostParam(r *http.Request) (string, error) {
	h := r.URL.Query().Get("hostname")
	if h == "" {
		return "", nil
	}
	return control.ValidateShieldHostname(h)
}

func (a *api) addIPRule(w http.ResponseWriter, r *http.Request) error {
	var rule control.IPRule
	if err := decode(w, r, &rule, 64<<10); err != nil {
		return err
	}
	if err := rule.Validate(); err != nil {
		return err
	}
	rule.ID, rule.CreatedAt = newID(), time.Now().UTC()
	if err := a.create(r.Context(), store.IPRulesPrefix, rule.ID, rule, maxIPRules, "ip rule"); err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusCreated, rule)
	return nil
}

func (a *api) listIPRules(w http.ResponseWriter, r *http.Request) error {
	host, err := hostParam(r)
	if err != nil {
		return err
	}
	rules, err := list(r.Context(), a.cli, store.IPRulesPrefix, func(x control.IPRule) bool { return host == "" || x.Hostname == host })
	if err != nil {
		return err
	}
	slices.SortFunc(rules, func(x, y control.IPRule) int {
		return strings.Compare(x.Hostname+" "+x.CreatedAt.Format(time.RFC3339Nano), y.Hostname+" "+y.CreatedAt.Format(time.RFC3339Nano))
	})
	controlserver.WriteJSON(w, http.StatusOK, rules)
	return nil
}

func (a *api) addRateLimit(w http.ResponseWriter, r *http.Request) error {
	var lim control.RateLimit
	if err := decode(w, r, &lim, 64<<10); err != nil {
		return err
	}
	if err := lim.Validate(); err != nil {
		return err
	}
	lim.ID, lim.CreatedAt = newID(), time.Now().UTC()
	if err := a.create(r.Context(), store.RateLimitsPrefix, lim.ID, lim, maxRateLimits, "rate limit"); err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusCreated, lim)
	return nil
}

func (a *api) listRateLimits(w http.ResponseWriter, r *http.Request) error {
	host, err := hostParam(r)
	if err != nil {
		return err
	}
	lims, err := list(r.Context(), a.cli, store.RateLimitsPrefix, func(x control.RateLimit) bool { return host == "" || x.Hostname == host })
	if err != nil {
		return err
	}
	slices.SortFunc(lims, func(x, y control.RateLimit) int {
		return strings.Compare(x.Hostname+" "+x.CreatedAt.Format(time.RFC3339Nano), y.Hostname+" "+y.CreatedAt.Format(time.RFC3339Nano))
	})
	controlserver.WriteJSON(w, http.StatusOK, lims)
	return nil
}

// validID checks a record ID from a path.
func validID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\x00") {
		return control.Errorf(control.ErrInvalid, "id %q is not a record ID", id)
	}
	return nil
}

func (a *api) deleteRecord(prefix, what string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		if err := validID(id); err != nil {
			return err
		}
		resp, err := a.cli.Delete(r.Context(), prefix+id)
		if err != nil {
			return fmt.Errorf("shield: deleting %s: %w", what, err)
		}
		if resp.Deleted == 0 {
			return control.Errorf(control.ErrNotFound, "no %s %s", what, id)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (a *api) listWAF(w http.ResponseWriter, r *http.Request) error {
	cfgs, err := list[control.WAFConfig](r.Context(), a.cli, store.WAFPrefix, nil)
	if err != nil {
		return err
	}
	slices.SortFunc(cfgs, func(x, y control.WAFConfig) int { return strings.Compare(x.Hostname, y.Hostname) })
	controlserver.WriteJSON(w, http.StatusOK, cfgs)
	return nil
}

func wafHost(r *http.Request) (string, error) {
	return control.ValidateShieldHostname(r.PathValue("hostname"))
}

func (a *api) getWAF(w http.ResponseWriter, r *http.Request) error {
	host, err := wafHost(r)
	if err != nil {
		return err
	}
	resp, err := a.cli.Get(r.Context(), store.WAFKey(host))
	if err != nil {
		return fmt.Errorf("shield: reading waf setting: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return control.Errorf(control.ErrNotFound, "%s has no waf setting of its own", host)
	}
	var c control.WAFConfig
	if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
		return fmt.Errorf("shield: waf setting of %s: %w", host, err)
	}
	controlserver.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (a *api) deleteWAF(w http.ResponseWriter, r *http.Request) error {
	host, err := wafHost(r)
	if err != nil {
		return err
	}
	resp, err := a.cli.Delete(r.Context(), store.WAFKey(host))
	if err != nil {
		return fmt.Errorf("shield: deleting waf setting: %w", err)
	}
	if resp.Deleted == 0 {
		return control.Errorf(control.ErrNotFound, "%s has no waf setting of its own", host)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateWAF changes a hostname's setting with change, atomically (it
// retries when another writer got there first), and answers with the
// result. create says whether a hostname without a setting gets one.
// compile makes it check that the result compiles.
func (a *api) updateWAF(w http.ResponseWriter, r *http.Request, create, compile bool, change func(*control.WAFConfig) error) error {
	host, err := wafHost(r)
	if err != nil {
		return err
	}
	key := store.WAFKey(host)
	ctx := r.Context()
	for range 5 {
		resp, err := a.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("shield: reading waf setting: %w", err)
		}
		c := control.WAFConfig{Hostname: host}
		var rev int64
		if len(resp.Kvs) > 0 {
			if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil {
				return fmt.Errorf("shield: waf setting of %s: %w", host, err)
			}
			rev = resp.Kvs[0].ModRevision
		} else if !create {
			return control.Errorf(control.ErrNotFound, "%s has no waf setting of its own; run adit waf set %s --mode ... first", host, host)
		}
		if err := change(&c); err != nil {
			return err
		}
		c.Hostname = host
		if err := c.Validate(); err != nil {
			return err
		}
		if compile {
			if err := a.check(c); err != nil {
				return control.Errorf(control.ErrInvalid, "waf rules of %s: %v", host, err)
			}
		}
		c.UpdatedAt = time.Now().UTC()
		val, err := json.Marshal(c)
		if err != nil {
			return err
		}
		txn, err := a.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return fmt.Errorf("shield: storing waf setting: %w", err)
		}
		if txn.Succeeded {
			controlserver.WriteJSON(w, http.StatusOK, c)
			return nil
		}
	}
	return control.Errorf(control.ErrConflict, "the waf setting of %s is changing under us; try again", host)
}

func (a *api) setWAF(w http.ResponseWriter, r *http.Request) error {
	var s control.WAFSettings
	if err := decode(w, r, &s, 64<<10); err != nil {
		return err
	}
	return a.updateWAF(w, r, true, false, func(c *control.WAFConfig) error {
		s.Apply(c)
		return nil
	})
}

func (a *api) addExclusion(w http.ResponseWriter, r *http.Request) error {
	var e control.WAFExclusion
	if err := decode(w, r, &e, 64<<10); err != nil {
		return err
	}
	if err := e.Validate(); err != nil {
		return err
	}
	e.ID = newID()
	return a.updateWAF(w, r, false, true, func(c *control.WAFConfig) error {
		c.Exclusions = append(c.Exclusions, e)
		return nil
	})
}

func (a *api) deleteExclusion(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	return a.updateWAF(w, r, false, false, func(c *control.WAFConfig) error {
		i := slices.IndexFunc(c.Exclusions, func(e control.WAFExclusion) bool { return e.ID == id })
		if i < 0 {
			return control.Errorf(control.ErrNotFound, "%s has no exclusion %s", c.Hostname, id)
		}
		c.Exclusions = slices.Delete(c.Exclusions, i, i+1)
		return nil
	})
}

func (a *api) addRules(w http.ResponseWriter, r *http.Request) error {
	var rs control.WAFRules
	if err := decode(w, r, &rs, maxWAFBody); err != nil {
		return err
	}
	if err := rs.Validate(); err != nil {
		return err
	}
	rs.ID = newID()
	return a.updateWAF(w, r, false, true, func(c *control.WAFConfig) error {
		c.Rules = append(c.Rules, rs)
		return nil
	})
}

func (a *api) deleteRules(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	return a.updateWAF(w, r, false, false, func(c *control.WAFConfig) error {
		i := slices.IndexFunc(c.Rules, func(x control.WAFRules) bool { return x.ID == id })
		if i < 0 {
			return control.Errorf(control.ErrNotFound, "%s has no rules %s", c.Hostname, id)
		}
		c.Rules = slices.Delete(c.Rules, i, i+1)
		return nil
	})
}
