package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files made for one test: a CA, a server certificate for
// 127.0.0.1 and localhost, a client certificate, both signed by the CA,
// and, for failures, an expired server certificate and a second CA that
// signed nothing here.
type Certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	ExpiredCert, ExpiredKey                          string
	OtherCA                                          string
}

// MakeCerts writes a set of certificates into a temporary directory.
func MakeCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	c := &Certs{}
	caKey, caCert := newCert(t, "databus test CA", nil, nil, true, time.Now().Add(24*time.Hour))
	c.CA = writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	issue := func(name string, notAfter time.Time) (cert, key string) {
		k, crt := newCert(t, name, caCert, caKey, false, notAfter)
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", crt.Raw), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", der)
	}
	c.ServerCert, c.ServerKey = issue("server", time.Now().Add(24*time.Hour))
	c.ClientCert, c.ClientKey = issue("client", time.Now().Add(24*time.Hour))
	c.ExpiredCert, c.ExpiredKey = issue("expired", time.Now().Add(-time.Hour))
	_, other := newCert(t, "another CA", nil, nil, true, time.Now().Add(24*time.Hour))
	c.OtherCA = writePEM(t, dir, "other-ca.pem", "CERTIFICATE", other.Raw)
	return c
}

// newCert makes a certificate for name signed by parent (self-signed
// without one).
func newCert(t testing.TB, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
