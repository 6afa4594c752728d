//go:build !unix

package procs

import "time"

// cpuTime cannot be read here: Adapt stays off.
func cpuTime() (time.Duration, bool) { return 0, false }
