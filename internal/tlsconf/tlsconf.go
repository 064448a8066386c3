// Package tlsconf builds the TLS configurations of databus' connections
// from PEM files: to MySQL/MariaDB (with MySQL's ssl-mode values), and to
// and of NATS servers.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/go-sql-driver/mysql"
)

// Mode is how a connection to MySQL/MariaDB uses TLS, as MySQL's
// --ssl-mode names it.
type Mode string

// The modes.
const (
	// Disabled never uses TLS.
	Disabled Mode = "disabled"
	// Preferred uses TLS when the server offers it, without checking its
	// certificate, and plain TCP otherwise.
	Preferred Mode = "preferred"
	// Required uses TLS, without checking the server's certificate.
	Required Mode = "required"
	// VerifyCA uses TLS and checks that the server's certificate is
	// signed by the CA, whatever name it carries.
	VerifyCA Mode = "verify-ca"
	// VerifyIdentity also checks that the certificate names the host
	// connected to.
	VerifyIdentity Mode = "verify-identity"
)

// Effective is m, or Preferred when m is empty (the default).
func (m Mode) Effective() Mode {
	if m == "" {
		return Preferred
	}
	return m
}

// ParseMode checks a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Disabled, Preferred, Required, VerifyCA, VerifyIdentity:
		return m, nil
	}
	return "", fmt.Errorf("unknown TLS mode %q: want disabled, preferred, required, verify-ca or verify-identity", s)
}

// Files are the PEM files of one side of a connection: the CA that signs
// the other side's certificate, and this side's own certificate and key.
type Files struct {
	CA, Cert, Key string
}

// MySQL returns the TLS configuration of a connection to host in mode
// (empty is Preferred; nil for Disabled). Preferred needs the caller's
// fallback to plain TCP when the server has no TLS.
func MySQL(mode Mode, f Files, host string) (*tls.Config, error) {
	mode = mode.Effective()
	if mode == Disabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if err := f.addCert(c); err != nil {
		return nil, err
	}
	switch mode {
	case Preferred, Required:
		c.InsecureSkipVerify = true // encryption only, as MySQL's modes of these names
	case VerifyCA:
		pool, err := f.pool()
		if err != nil {
			return nil, err
		}
		c.InsecureSkipVerify = true // the chain is checked below, the name is not
		c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error { return verifyChain(raw, pool) }
	case VerifyIdentity:
		pool, err := f.pool()
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	return c, nil
}

// Client returns the configuration of a client that checks the server's
// certificate against the CA (the system's CAs without one) and presents
// its own certificate when it has one. It is nil when no file is set.
func Client(f Files) (*tls.Config, error) {
	if f == (Files{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := f.pool()
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	return c, f.addCert(c)
}

// Server returns the configuration of a server presenting f's certificate;
// with verifyClients, clients must present one signed by f's CA.
func Server(f Files, verifyClients bool) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("a TLS server needs a certificate and a key")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if err := f.addCert(c); err != nil {
		return nil, err
	}
	if verifyClients {
		pool, err := f.pool()
		if err != nil {
			return nil, err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func (f Files) addCert(c *tls.Config) error {
	switch {
	case f.Cert == "" && f.Key == "":
		return nil
	case f.Cert == "" || f.Key == "":
		return errors.New("a certificate needs its key, and a key its certificate: set both")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return fmt.Errorf("loading certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	c.Certificates = []tls.Certificate{cert}
	return nil
}

func (f Files) pool() (*x509.CertPool, error) {
	if f.CA == "" {
		return nil, errors.New("verifying certificates needs the CA that signs them: set the CA file")
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", f.CA)
	}
	return pool, nil
}

// verifyChain checks the server's certificate chain (raw, leaf first)
// against roots, without checking the name.
func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("the server's certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

// Driver sets the TLS of go-sql-driver's mc, which reaches mc.Addr, for
// mode (empty is Preferred) and f, with the fallback to plain TCP that
// Preferred means.
func Driver(mc *mysql.Config, mode Mode, f Files) error {
	host, _, _ := net.SplitHostPort(mc.Addr)
	c, err := MySQL(mode, f, host)
	if err != nil {
		return err
	}
	mc.TLS, mc.AllowFallbackToPlaintext = c, mode.Effective() == Preferred
	return nil
}
