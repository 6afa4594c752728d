package control

import "time"

// EdgeNode is one live edge of the fleet, as it registers itself in etcd under
// its own lease (key store.EdgeKey(Name)): when the edge dies, the lease
// expires and the record goes with it. Addresses are host:port as others
// reach them; an empty one means the edge does not serve that listener.
type EdgeNode struct {
	Name        string    `json:"name"`         // the edge's node name (--node-name)
	Region      string    `json:"region"`       // --region; empty: none given
	Version     string    `json:"version"`      // adit version the edge runs
	Started     time.Time `json:"started"`      //
	PublicAddrs []string  `json:"public_addrs"` // visitors' HTTP/HTTPS addresses (what DNS answers with)
	HTTPAddr    string    `json:"http_addr"`    // public HTTP listener
	HTTPSAddr   string    `json:"https_addr"`   // public HTTPS listener
	TunnelAddr  string    `json:"tunnel_addr"`  // what connectors dial
	APIAddr     string    `json:"api_addr"`     // the /v1 API (HTTPS)
	PeerAddr    string    `json:"peer_addr"`    // the peer link other edges forward requests over
	Health      string    `json:"health"`       // EdgeHealthOK or EdgeHealthDraining
}

// An EdgeNode's Health.
const (
	EdgeHealthOK       = "ok"       // takes visitors and connectors
	EdgeHealthDraining = "draining" // finishing what is in flight, then leaving: send nothing new
)
