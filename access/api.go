package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/control"
	"github.com/adit-dev/adit/control/controlserver"
	"github.com/adit-dev/adit/internal/store"
)

// Endpoints are the Access API (/v1/access/..., docs/openapi.yaml), served
// by the edge behind its admin token. Writes go to etcd; each answers once
// this edge has applied it, and every other edge applies it within a
// second through its watch.
func (l *Layer) Endpoints() []controlserver.Endpoint {
	return []controlserver.Endpoint{
		{Pattern: "GET /v1/access/idps", Handle: l.listIdPs},
		{Pattern: "POST /v1/access/idps", Handle: l.addIdP},
		{Pattern: "DELETE /v1/access/idps/{name}", Handle: l.deleteIdP},
		{Pattern: "GET /v1/access/apps", Handle: l.listApps},
		{Pattern: "POST /v1/access/apps", Handle: l.createApp},
		{Pattern: "GET /v1/access/apps/{name}", Handle: l.getApp},
		{Pattern: "DELETE /v1/access/apps/{name}", Handle: l.deleteApp},
		{Pattern: "POST /v1/access/apps/{name}/policies", Handle: l.addPolicy},
		{Pattern: "DELETE /v1/access/apps/{name}/policies/{n}", Handle: l.deletePolicy},
		{Pattern: "POST /v1/access/apps/{name}/revoke-sessions", Handle: l.revokeSessions},
		{Pattern: "GET /v1/access/service-tokens", Handle: l.listTokens},
		{Pattern: "POST /v1/access/service-tokens", Handle: l.createToken},
		{Pattern: "DELETE /v1/access/service-tokens/{name}", Handle: l.revokeToken},
		{Pattern: "GET /v1/access/keys", Handle: l.listKeys},
		{Pattern: "POST /v1/access/keys", Handle: l.rotateKey},
	}
}

// getAll reads every record under prefix into a slice of T.
func getAll[T any](ctx context.Context, cli *clientv3.Client, prefix string) ([]T, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("access: reading %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

// getOne reads the record at key into v; ErrNotFound names what.
func getOne(ctx context.Context, cli *clientv3.Client, key, what string, v any) (int64, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("access: reading %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, control.Errorf(control.ErrNotFound, "%s not found", what)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("access: %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// create writes v at key unless something is there.
func (l *Layer) create(ctx context.Context, key, what string, v any) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := l.st.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("access: writing %s: %w", key, err)
	}
	if !resp.Succeeded {
		return control.Errorf(control.ErrConflict, "%s already exists", what)
	}
	l.st.waitRev(ctx, resp.Header.Revision)
	return nil
}

// update writes v at key if it is still at revision rev.
func (l *Layer) update(ctx context.Context, key, what string, rev int64, v any) error {
	val, err := json.Marshal(v)
	if err != nil {
		return err
	}
	resp, err := l.st.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("access: writing %s: %w", key, err)
	}
	if !resp.Succeeded {
		return control.Errorf(control.ErrConflict, "%s changed meanwhile; try again", what)
	}
	l.st.waitRev(ctx, resp.Header.Revision)
	return nil
}

// remove deletes key; ErrNotFound names what.
func (l *Layer) remove(ctx context.Context, key, what string) error {
	resp, err := l.st.cli.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("access: deleting %s: %w", key, err)
	}
	if resp.Deleted == 0 {
		return control.Errorf(control.ErrNotFound, "%s not found", what)
	}
	l.st.waitRev(ctx, resp.Header.Revision)
	return nil
}

func (l *Layer) listIdPs(w http.ResponseWriter, r *http.Request) error {
	idps, err := getAll[control.AccessIdP](r.Context(), l.st.cli, store.AccessIdPsPrefix)
	if err != nil {
		return err
	}
	for i := range idps {
		idps[i].ClientSecretSet = idps[i].ClientSecret != ""
		idps[i].ClientSecret = ""
	}
	controlserver.WriteJSON(w, http.StatusOK, idps)
	return nil
}

func (l *Layer) addIdP(w http.ResponseWriter, r *http.Request) error {
	var p control.AccessIdP
	if err := controlserver.DecodeJSON(w, r, &p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	p.CreatedAt = l.now().UTC()
	p.ClientSecretSet = false
	if err := l.create(r.Context(), store.AccessIdPKey(p.Name), fmt.Sprintf("identity provider %q", p.Name), p); err != nil {
		return err
	}
	l.log.Info("identity provider added", "idp", p.Name, "issuer", p.Issuer)
	p.ClientSecretSet = p.ClientSecret != ""
	p.ClientSecret = ""
	controlserver.WriteJSON(w, http.StatusCreated, p)
	return nil
}

func (l *Layer) deleteIdP(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	apps, err := getAll[control.AccessApp](r.Context(), l.st.cli, store.AccessAppsPrefix)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if a.IdP == name {
			return control.Errorf(control.ErrConflict, "identity provider %q is used by application %q; delete the application or point it elsewhere first", name, a.Name)
		}
	}
	if err := l.remove(r.Context(), store.AccessIdPKey(name), fmt.Sprintf("identity provider %q", name)); err != nil {
		return err
	}
	l.log.Info("identity provider deleted", "idp", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (l *Layer) listApps(w http.ResponseWriter, r *http.Request) error {
	apps, err := getAll[control.AccessApp](r.Context(), l.st.cli, store.AccessAppsPrefix)
	if err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, apps)
	return nil
}

func (l *Layer) createApp(w http.ResponseWriter, r *http.Request) error {
	var a control.AccessApp
	if err := controlserver.DecodeJSON(w, r, &a); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return err
	}
	ctx := r.Context()
	if a.IdP != "" {
		var p control.AccessIdP
		if _, err := getOne(ctx, l.st.cli, store.AccessIdPKey(a.IdP), "identity provider "+strconv.Quote(a.IdP), &p); err != nil {
			return control.Errorf(control.ErrInvalid, "application %q: identity provider %q does not exist", a.Name, a.IdP)
		}
	}
	apps, err := getAll[control.AccessApp](ctx, l.st.cli, store.AccessAppsPrefix)
	if err != nil {
		return err
	}
	for _, o := range apps {
		if o.Domain == a.Domain {
			return control.Errorf(control.ErrConflict, "application %q already covers %s", o.Name, a.Domain)
		}
	}
	if a.Policies == nil {
		a.Policies = []control.AccessPolicy{}
	}
	aud := make([]byte, 32)
	rand.Read(aud)
	a.AUD = hex.EncodeToString(aud)
	a.CreatedAt = l.now().UTC()
	if err := l.create(ctx, store.AccessAppKey(a.Name), fmt.Sprintf("application %q", a.Name), a); err != nil {
		return err
	}
	l.log.Info("application created", "app", a.Name, "domain", a.Domain)
	controlserver.WriteJSON(w, http.StatusCreated, a)
	return nil
}

func (l *Layer) getApp(w http.ResponseWriter, r *http.Request) error {
	var a control.AccessApp
	name := r.PathValue("name")
	if _, err := getOne(r.Context(), l.st.cli, store.AccessAppKey(name), fmt.Sprintf("application %q", name), &a); err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (l *Layer) deleteApp(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := l.remove(r.Context(), store.AccessAppKey(name), fmt.Sprintf("application %q", name)); err != nil {
		return err
	}
	l.log.Info("application deleted", "app", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// editApp reads an application, applies edit and writes it back.
func (l *Layer) editApp(w http.ResponseWriter, r *http.Request, edit func(a *control.AccessApp) error) error {
	name := r.PathValue("name")
	what := fmt.Sprintf("application %q", name)
	var a control.AccessApp
	rev, err := getOne(r.Context(), l.st.cli, store.AccessAppKey(name), what, &a)
	if err != nil {
		return err
	}
	if err := edit(&a); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return err
	}
	if err := l.update(r.Context(), store.AccessAppKey(name), what, rev, a); err != nil {
		return err
	}
	controlserver.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (l *Layer) addPolicy(w http.ResponseWriter, r *http.Request) error {
	var p control.AccessPolicy
	if err := controlserver.DecodeJSON(w, r, &p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	return l.editApp(w, r, func(a *control.AccessApp) error {
		a.Policies = append(a.Policies, p)
		l.log.Info("policy added", "app", a.Name, "position", len(a.Policies), "action", p.Action,
			"include", strings.Join(p.Include, ","), "require", strings.Join(p.Require, ","), "exclude", strings.Join(p.Exclude, ","))
		return nil
	})
}

func (l *Layer) deletePolicy(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		return control.Errorf(control.ErrInvalid, "policy position %q is not a number", r.PathValue("n"))
	}
	return l.editApp(w, r, func(a *control.AccessApp) error {
		if n < 1 || n > len(a.Policies) {
			return control.Errorf(control.ErrNotFound, "application %q has no policy %d (it has %d)", a.Name, n, len(a.Policies))
		}
		a.Policies = slices.Delete(a.Policies, n-1, n)
		l.log.Info("policy deleted", "app", a.Name, "position", n)
		return nil
	})
}

func (l *Layer) listTokens(w http.ResponseWriter, r *http.Request) error {
	recs, err := getAll[tokenRecord](r.Context(), l.st.cli, store.AccessServiceTokensPrefix)
	if err != nil {
		return err
	}
	out := make([]control.AccessServiceToken, len(recs))
	for i, t := range recs {
		out[i] = t.AccessServiceToken
	}
	controlserver.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (l *Layer) createToken(w http.ResponseWriter, r *http.Request) error {
	var req control.CreateServiceTokenRequest
	if err := controlserver.DecodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := control.ValidateAccessName("service token", req.Name); err != nil {
		return err
	}
	d, err := control.ParseServiceTokenDuration(req.Duration)
	if err != nil {
		return err
	}
	now := l.now().UTC()
	secret := randomString(32)
	sum := sha256.Sum256([]byte(secret))
	rec := tokenRecord{
		AccessServiceToken: control.AccessServiceToken{
			Name: req.Name, ClientID: randomString(16) + ".access", CreatedAt: now, ExpiresAt: now.Add(d),
		},
		SecretHash: sum[:],
	}
	if err := l.create(r.Context(), store.AccessServiceTokenKey(req.Name), fmt.Sprintf("service token %q", req.Name), rec); err != nil {
		return err
	}
	l.log.Info("service token created", "token", req.Name, "client_id", rec.ClientID, "expires", rec.ExpiresAt)
	controlserver.WriteJSON(w, http.StatusCreated, control.AccessServiceTokenCreated{AccessServiceToken: rec.AccessServiceToken, ClientSecret: secret})
	return nil
}

func (l *Layer) revokeToken(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := l.remove(r.Context(), store.AccessServiceTokenKey(name), fmt.Sprintf("service token %q", name)); err != nil {
		return err
	}
	l.log.Info("service token revoked", "token", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (l *Layer) listKeys(w http.ResponseWriter, r *http.Request) error {
	recs, err := getAll[keyRecord](r.Context(), l.st.cli, store.AccessKeysPrefix)
	if err != nil {
		return err
	}
	out := make([]control.AccessKey, len(recs))
	for i, k := range recs {
		out[i] = k.AccessKey
	}
	controlserver.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (l *Layer) rotateKey(w http.ResponseWriter, r *http.Request) error {
	now := l.now()
	rec, rev, wrote, err := putKeyIfAbsent(r.Context(), l.st.cli, "r"+strconv.FormatInt(now.UnixNano(), 36), now, now.Add(keyActivation))
	if err != nil {
		return err
	}
	if !wrote {
		return control.Errorf(control.ErrConflict, "a key was just rotated; try again")
	}
	l.st.waitRev(r.Context(), rev)
	l.log.Info("signing key rotated", "kid", rec.KID)
	controlserver.WriteJSON(w, http.StatusCreated, rec.AccessKey)
	return nil
}
