package edgecmd

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/internal/store"
)

// etcdFlags are the flags that secure --etcd-endpoints; the rest land in
// edge.Config.Etcd directly.
type etcdFlags struct {
	passwordFile string
}

func addEtcdFlags(fl *pflag.FlagSet, cfg *edge.Config, f *etcdFlags) {
	fl.StringVar(&cfg.Etcd.CAFile, "etcd-ca", "", "PEM CA bundle that signs the etcd servers' certificates (default: the system roots)")
	fl.StringVar(&cfg.Etcd.CertFile, "etcd-cert", "", "PEM client certificate for etcd (--client-cert-auth)")
	fl.StringVar(&cfg.Etcd.KeyFile, "etcd-key", "", "PEM key of --etcd-cert")
	fl.StringVar(&cfg.Etcd.Username, "etcd-user", "", "etcd user name (etcd's own auth; the password from --etcd-password-file)")
	fl.StringVar(&f.passwordFile, "etcd-password-file", "", "file holding the password of --etcd-user")
	fl.BoolVar(&cfg.Etcd.Insecure, "etcd-insecure", false, "allow http:// etcd endpoints on other machines (state and credentials cross the network in clear)")
}

// apply reads the password file into cfg and checks the etcd flags go
// together.
func (f etcdFlags) apply(cfg *edge.Config) error {
	r := cfg.Etcd
	if len(cfg.EtcdEndpoints) == 0 {
		for _, set := range []struct {
			flag string
			on   bool
		}{
			{"--etcd-ca", r.CAFile != ""}, {"--etcd-cert", r.CertFile != ""}, {"--etcd-key", r.KeyFile != ""},
			{"--etcd-user", r.Username != ""}, {"--etcd-password-file", f.passwordFile != ""}, {"--etcd-insecure", r.Insecure},
		} {
			if set.on {
				return fmt.Errorf("edge: %s is for an external etcd: it needs --etcd-endpoints", set.flag)
			}
		}
		return nil
	}
	switch {
	case r.Username != "" && f.passwordFile == "":
		return errors.New("edge: --etcd-user needs --etcd-password-file")
	case r.Username == "" && f.passwordFile != "":
		return errors.New("edge: --etcd-password-file needs --etcd-user")
	case f.passwordFile != "":
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return fmt.Errorf("edge: --etcd-password-file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return fmt.Errorf("edge: --etcd-password-file: %s is empty", f.passwordFile)
		}
		cfg.Etcd.Password = pw
	}
	return nil
}

// etcdError names the flag that allows what the store refused.
func etcdError(err error) error {
	if errors.Is(err, store.ErrPlaintextEndpoint) {
		return fmt.Errorf("%w; pass --etcd-insecure to allow it", err)
	}
	return err
}
