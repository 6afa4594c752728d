package store

// JoinTokensPrefix holds the fleet's join tokens, one JSON record per
// token ID (the sha256 of its secret, never the secret), each under a
// lease of the token's TTL when it has one.
const JoinTokensPrefix = Prefix + "join-tokens/"

// JoinTokenKey is the key of the join token with that ID.
func JoinTokenKey(id string) string { return JoinTokensPrefix + id }
