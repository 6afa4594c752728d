package store

// Access records (package access): identity providers, applications with
// their policies, service tokens and the edges' signing keys, each under
// its own prefix of AccessPrefix, which the Access layer of every edge
// watches.
const (
	AccessPrefix              = Prefix + "access/"
	AccessIdPsPrefix          = AccessPrefix + "idps/"
	AccessAppsPrefix          = AccessPrefix + "apps/"
	AccessServiceTokensPrefix = AccessPrefix + "service-tokens/"
	AccessKeysPrefix          = AccessPrefix + "keys/"
)

// AccessIdPKey is the key of an identity provider, by name.
func AccessIdPKey(name string) string { return AccessIdPsPrefix + name }

// AccessAppKey is the key of an application (with its policies), by name.
func AccessAppKey(name string) string { return AccessAppsPrefix + name }

// AccessServiceTokenKey is the key of a service token, by name; the record
// holds its client ID and the sha256 of its secret.
func AccessServiceTokenKey(name string) string { return AccessServiceTokensPrefix + name }

// AccessKeyKey is the key of a signing key, by key ID.
func AccessKeyKey(kid string) string { return AccessKeysPrefix + kid }

// Session revocations (package access), apart from AccessPrefix: they are
// many and short-lived, so every edge watches them on their own and a
// logout does not rebuild the Access records. Each key is held by a lease
// that ends once no session it revokes can still be valid.
const (
	AccessRevokedPrefix = Prefix + "access-revoked/"
	// AccessRevokedSessionsPrefix + a session's ID (its jti): one session,
	// ended by /.adit/logout.
	AccessRevokedSessionsPrefix = AccessRevokedPrefix + "sessions/"
	// AccessRevokedAppsPrefix + an application's name: its sessions
	// issued before a time; + "NAME/users/" + an email (path-escaped,
	// lower-case): that person's.
	AccessRevokedAppsPrefix = AccessRevokedPrefix + "apps/"
)

// AccessRevokedSessionKey is the key of a revoked session, by its ID.
func AccessRevokedSessionKey(id string) string { return AccessRevokedSessionsPrefix + id }

// AccessRevokedAppKey is the key of an application's revocation of its
// sessions; with escapedEmail, of one person's sessions.
func AccessRevokedAppKey(app, escapedEmail string) string {
	if escapedEmail == "" {
		return AccessRevokedAppsPrefix + app
	}
	return AccessRevokedAppsPrefix + app + "/users/" + escapedEmail
}
