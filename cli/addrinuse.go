package cli

import (
	"errors"
	"fmt"
	"syscall"
)

// AddrInUse adds the flag to change to an error from a listener whose
// address is taken: "...: address already in use; another program
// listens there: choose another --http-addr". Other errors, and nil, are
// returned as they are.
func AddrInUse(err error, flag string) error {
	if err == nil || flag == "" || !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	return fmt.Errorf("%w; another program listens there: choose another %s", err, flag)
}
