package store

// SessionsPrefix holds the dashboard's sessions, one per login, each under
// the sha256 (hex) of its cookie value and a lease of its lifetime.
const SessionsPrefix = Prefix + "sessions/"

// SessionKey is the key of a session, given the hex sha256 of its cookie value.
func SessionKey(hashHex string) string { return SessionsPrefix + hashHex }
