// Package controlserver is the server side of adit's control plane, kept in
// etcd: the [Service] that implements [control.API] over an etcd client, the
// /v1 HTTP API over that service ([NewHandler]), and API tokens.
//
// It also feeds the edge's request path, which must never wait on etcd:
// [State] holds tunnels, routes and connections in memory and keeps them
// current with a watch, and [Presence] publishes the connections an edge
// holds under one lease, so they vanish if the edge dies.
//
// Only the edge needs this package; the connector and the admin commands
// use package control's [control.Client]. The etcd keys are described in
// package store; the rules of the model in package control.
//
// A tunnel's TCP routes are removed right after the tunnel is deleted
// (tcproute.go).
package controlserver
