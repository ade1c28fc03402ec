// Package certs creates and checks the X.509 material of the Fornax link: the
// hub's CA, its serving certificate, the client certificates that name each
// child cluster, and the CA hash a joining child pins.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// Organization is the subject organisation of every client certificate the
// hub issues to a child cluster; the common name is the cluster's name.
const Organization = "fornax:clusters"

// Backdate is how far before issue a certificate becomes valid, to tolerate
// clocks that run a little behind. A certificate's useful lifetime runs from
// NotBefore+Backdate to NotAfter.
const Backdate = time.Minute

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewKey returns a new ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

// NewCA creates a self-signed CA valid for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA parses a CA from PEM.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate is not a CA")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// CertPEM returns the CA certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte { return EncodeCertPEM(ca.Cert) }

// KeyPEM returns the CA key, PEM-encoded.
func (ca *CA) KeyPEM() ([]byte, error) { return EncodeKeyPEM(ca.Key) }

// Template says what certificate to issue.
type Template struct {
	Subject  pkix.Name
	DNSNames []string
	IPs      []net.IP
	Usage    x509.ExtKeyUsage
	Validity time.Duration
}

// Issue signs a certificate for pub.
func (ca *CA) Issue(pub crypto.PublicKey, t Template) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(t.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      t.Subject,
		NotBefore:    now.Add(-Backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{t.Usage},
		DNSNames:     t.DNSNames,
		IPAddresses:  t.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", t.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// IssueServing issues a TLS server certificate and key for the given hosts
// (IP addresses or DNS names).
func (ca *CA) IssueServing(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	t := Template{Subject: pkix.Name{CommonName: "fornax-hub"}, Usage: x509.ExtKeyUsageServerAuth, Validity: validity}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPs = append(t.IPs, ip)
		} else if h != "" {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	cert, err := ca.Issue(key.Public(), t)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = EncodeKeyPEM(key)
	return EncodeCertPEM(cert), keyPEM, err
}

// SignClusterCSR checks a certificate signing request and issues a client
// certificate naming cluster. The identity is the hub's decision: whatever
// subject the request asks for is ignored.
func (ca *CA) SignClusterCSR(csrPEM []byte, cluster string, validity time.Duration) (*x509.Certificate, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("the certificate signing request is not PEM-encoded")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate signing request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the certificate signing request's signature is invalid: %w", err)
	}
	return ca.Issue(csr.PublicKey, Template{
		Subject:  pkix.Name{CommonName: cluster, Organization: []string{Organization}},
		Usage:    x509.ExtKeyUsageClientAuth,
		Validity: validity,
	})
}

// NewCSR creates a private key and a certificate signing request for it.
func NewCSR(commonName string) (keyPEM, csrPEM []byte, err error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate signing request: %w", err)
	}
	keyPEM, err = EncodeKeyPEM(key)
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), err
}

// ClusterName returns the cluster a client certificate identifies, or an
// error if it is not a Fornax cluster certificate.
func ClusterName(cert *x509.Certificate) (string, error) {
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != Organization || cert.Subject.CommonName == "" {
		return "", fmt.Errorf("certificate %q is not a Fornax cluster certificate", cert.Subject.String())
	}
	return cert.Subject.CommonName, nil
}

// Hash returns the pin of a CA certificate: "sha256:" and the hex SHA-256 of
// its DER-encoded SubjectPublicKeyInfo, as kubeadm's --discovery-token-ca-cert-hash.
func Hash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ValidHash reports whether s has the form Hash returns.
func ValidHash(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// EncodeCertPEM PEM-encodes a certificate.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeKeyPEM PEM-encodes a private key (PKCS #8).
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertPEM parses the first certificate in PEM data.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ParseKeyPEM parses a PKCS #8, EC or PKCS #1 private key in PEM.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM key found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM key type %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the key cannot sign")
	}
	return s, nil
}
