// Package e2e holds adit's end-to-end tests: a real edge (with its embedded
// etcd), real connectors over real QUIC, and real origins, all on 127.0.0.1
// with OS-chosen ports. Some tests run the adit binary itself (built once in
// TestMain) to cover the command line as a user meets it.
package e2e
