// Package tunneltest is a conformance suite for tunnel transports, and the
// helpers their tests share: a throwaway PKI, a leak check, a bounded test
// context and a connected pair of conns.
//
// Run checks what every transport must do the same way (streams both
// ways, echo with checksum, CloseWrite and Close semantics, close codes,
// certificate checks, concurrency, listener close, cancellation,
// addresses). Each transport's tests call it and keep only what is
// specific to them. The package is imported only by tests.
package tunneltest
