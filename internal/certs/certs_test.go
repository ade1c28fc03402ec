package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestSignClusterCSRDecidesTheIdentity(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The child asks for another name; the hub's choice wins.
	_, csr, err := NewCSR("someone-else")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignClusterCSR(csr, "berlin", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := ClusterName(cert); err != nil || name != "berlin" {
		t.Fatalf("identity %q, %v; want berlin", name, err)
	}
	if cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("certificate outlives its CA")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("usage %v, want client auth only", cert.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not verify against its CA: %v", err)
	}
	if _, err := ca.SignClusterCSR([]byte("garbage"), "x", time.Hour); err == nil {
		t.Error("signed garbage")
	}
}

func TestHash(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := Hash(ca.Cert)
	if !ValidHash(h) || !strings.HasPrefix(h, "sha256:") {
		t.Fatalf("hash %q is not valid", h)
	}
	for _, bad := range []string{"", "sha256:", "md5:abcd", "sha256:" + strings.Repeat("z", 64)} {
		if ValidHash(bad) {
			t.Errorf("%q accepted as a hash", bad)
		}
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil || Hash(back.Cert) != h {
		t.Errorf("CA does not survive PEM: %v", err)
	}
}
