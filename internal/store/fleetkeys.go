package store

// EdgesPrefix holds one control.EdgeNode per live edge of the fleet, each
// under that edge's lease.
const EdgesPrefix = Prefix + "edges/"

// EdgeKey is the key of the edge named node.
func EdgeKey(node string) string { return EdgesPrefix + node }

// EdgeDrainPrefix holds drain requests: a key per edge an operator asked to
// drain (`adit edge drain`), which that edge watches and deletes.
const EdgeDrainPrefix = Prefix + "edge-drain/"

// EdgeDrainKey is the drain request of the edge named node.
func EdgeDrainKey(node string) string { return EdgeDrainPrefix + node }
