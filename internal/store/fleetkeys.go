package store

// EdgesPrefix holds one control.EdgeNode per live edge of the fleet, each
// under that edge's lease.
const EdgesPrefix = Prefix + "edges/"

// EdgeKey is the key of the edge named node.
func EdgeKey(node string) string { return EdgesPrefix + node }
