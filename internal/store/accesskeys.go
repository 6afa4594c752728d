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
