package edgedns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/adit-dev/adit/internal/store"
)

// The TXT records under store.DNSTXTPrefix: what an ACME DNS-01 challenge
// presents, written by whichever edge orders a certificate (Provider) and
// answered by every edge's DNS server.

// txtRecord is the JSON of one TXT record in etcd.
type txtRecord struct {
	Name string `json:"name"` // fully qualified, lower-case, with the final dot
	Text string `json:"text"`
	TTL  uint32 `json:"ttl"` // seconds
}

// Bounds on TXT records.
const (
	maxTXTText    = 1024 // an ACME digest is 43 bytes
	maxTXTRecords = 4096
	maxTXTTTL     = 3600
	// TXTLease is how long a TXT record outlives the edge that wrote it
	// if that edge dies before removing it.
	TXTLease = time.Hour
)

// txtSet is a snapshot of the TXT records, by fully-qualified lower-case
// name; above holds every name with a TXT record below it (empty
// non-terminals: "foo.example.com." for "_acme-challenge.foo.example.com.").
type txtSet struct {
	byName map[string][]txtRecord
	above  map[string]bool
}

func parseTXT(recs map[string][]byte, log *slog.Logger) *txtSet {
	set := &txtSet{byName: make(map[string][]txtRecord), above: make(map[string]bool)}
	n := 0
	for key, val := range recs {
		if n == maxTXTRecords {
			log.Warn("more TXT records than DNS answers with; some are left out", "limit", maxTXTRecords)
			break
		}
		var r txtRecord
		if len(val) > 2*maxTXTText {
			continue
		}
		if err := json.Unmarshal(val, &r); err != nil || checkTXT(r) != nil {
			log.Warn("skipping an unreadable TXT record", "key", key)
			continue
		}
		n++
		set.byName[r.Name] = append(set.byName[r.Name], r)
		for i, c := range r.Name {
			if c == '.' && i+1 < len(r.Name) {
				set.above[r.Name[i+1:]] = true
			}
		}
	}
	for _, rs := range set.byName {
		slices.SortFunc(rs, func(a, b txtRecord) int { return strings.Compare(a.Text, b.Text) })
	}
	return set
}

func checkTXT(r txtRecord) error {
	if _, ok := dns.IsDomainName(r.Name); !ok || !dns.IsFqdn(r.Name) || r.Name != strings.ToLower(r.Name) {
		return fmt.Errorf("name %q is not a fully-qualified lower-case domain name", r.Name)
	}
	if r.Text == "" || len(r.Text) > maxTXTText {
		return fmt.Errorf("text of %d bytes: want 1 to %d", len(r.Text), maxTXTText)
	}
	if r.TTL > maxTXTTTL {
		return fmt.Errorf("ttl %d: the limit is %d", r.TTL, maxTXTTTL)
	}
	return nil
}

// txtKey is the etcd key of a record: its name without the final dot and
// a digest of its text.
func txtKey(r txtRecord) string {
	sum := sha256.Sum256([]byte(r.Text))
	return store.DNSTXTKey(strings.TrimSuffix(r.Name, "."), hex.EncodeToString(sum[:8]))
}

// Provider writes TXT records into etcd for every edge's DNS server to
// answer: certmagic's DNSProvider (libdns.RecordAppender and
// libdns.RecordDeleter, and libdns.RecordGetter), so certmagic's
// DNS01Solver can prove a name, wildcards included, in a zone the edges
// serve. Only TXT records, only in those zones; each lives under a lease
// of TXTLease, so one a dead edge left behind expires.
type Provider struct {
	cli   *clientv3.Client
	zones []string
}

var (
	_ libdns.RecordAppender = (*Provider)(nil)
	_ libdns.RecordDeleter  = (*Provider)(nil)
	_ libdns.RecordGetter   = (*Provider)(nil)
)

// record checks a libdns record for zone and returns it as stored.
func (p *Provider) record(zone string, rec libdns.Record) (txtRecord, error) {
	zone = dns.CanonicalName(zone)
	if !slices.Contains(p.zones, zone) {
		return txtRecord{}, fmt.Errorf("edgedns: zone %q is not served by the edges (--dns-zone)", zone)
	}
	rr := rec.RR()
	if rr.Type != "TXT" {
		return txtRecord{}, fmt.Errorf("edgedns: record type %q: only TXT records can be added", rr.Type)
	}
	r := txtRecord{Name: dns.CanonicalName(libdns.AbsoluteName(rr.Name, zone)), Text: rr.Data, TTL: uint32(min(max(rr.TTL, 0), maxTXTTTL*time.Second) / time.Second)}
	if !dns.IsSubDomain(zone, r.Name) {
		return txtRecord{}, fmt.Errorf("edgedns: record name %q is not in zone %q", r.Name, zone)
	}
	if err := checkTXT(r); err != nil {
		return txtRecord{}, fmt.Errorf("edgedns: TXT record: %w", err)
	}
	return r, nil
}

func (r txtRecord) libdns(zone string) libdns.Record {
	return libdns.TXT{Name: libdns.RelativeName(r.Name, dns.CanonicalName(zone)), TTL: time.Duration(r.TTL) * time.Second, Text: r.Text}
}

// AppendRecords adds TXT records to zone (a zone the edges serve).
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var out []libdns.Record
	for _, rec := range recs {
		r, err := p.record(zone, rec)
		if err != nil {
			return out, err
		}
		lease, err := p.cli.Grant(ctx, int64(TXTLease/time.Second))
		if err != nil {
			return out, fmt.Errorf("edgedns: adding a TXT record: %w", err)
		}
		b, _ := json.Marshal(r)
		if _, err := p.cli.Put(ctx, txtKey(r), string(b), clientv3.WithLease(lease.ID)); err != nil {
			return out, fmt.Errorf("edgedns: adding a TXT record: %w", err)
		}
		out = append(out, r.libdns(zone))
	}
	return out, nil
}

// DeleteRecords removes TXT records from zone; an empty text removes
// every TXT record of the name. Records not there are skipped.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var out []libdns.Record
	for _, rec := range recs {
		rr := rec.RR()
		if rr.Data == "" {
			rec = libdns.RR{Name: rr.Name, Type: "TXT", Data: "x"} // the name's prefix, below
		}
		r, err := p.record(zone, rec)
		if err != nil {
			return out, err
		}
		key := txtKey(r)
		if rr.Data == "" {
			key = store.DNSTXTKey(strings.TrimSuffix(r.Name, "."), "")
		}
		resp, err := p.cli.Delete(ctx, key, clientv3.WithPrefix(), clientv3.WithPrevKV())
		if err != nil {
			return out, fmt.Errorf("edgedns: deleting a TXT record: %w", err)
		}
		for _, kv := range resp.PrevKvs {
			var old txtRecord
			if json.Unmarshal(kv.Value, &old) == nil {
				out = append(out, old.libdns(zone))
			}
			if kv.Lease != 0 {
				p.cli.Revoke(ctx, clientv3.LeaseID(kv.Lease)) // the lease held this record only
			}
		}
	}
	return out, nil
}

// GetRecords lists the TXT records of zone that the edges answer besides
// what they derive from routes and the registry.
func (p *Provider) GetRecords(ctx context.Context, zone string) ([]libdns.Record, error) {
	zone = dns.CanonicalName(zone)
	if !slices.Contains(p.zones, zone) {
		return nil, fmt.Errorf("edgedns: zone %q is not served by the edges (--dns-zone)", zone)
	}
	resp, err := p.cli.Get(ctx, store.DNSTXTPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("edgedns: listing TXT records: %w", err)
	}
	var out []libdns.Record
	for _, kv := range resp.Kvs {
		var r txtRecord
		if json.Unmarshal(kv.Value, &r) != nil || checkTXT(r) != nil || !dns.IsSubDomain(zone, r.Name) {
			continue
		}
		out = append(out, r.libdns(zone))
	}
	return out, nil
}

var errNoZones = errors.New("edgedns: no zone to serve (--dns-zone)")
