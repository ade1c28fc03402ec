package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// certValidity is long enough for any test or demo, short enough that a
// forgotten directory does not hold credentials forever.
const certValidity = 30 * 24 * time.Hour

// keyPair is a certificate with its private key, both PEM-encoded on disk.
type keyPair struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPath string
	keyPath  string
}

// pki holds the credentials of one cluster.
type pki struct {
	dir       string
	ca        keyPair
	apiserver keyPair
	admin     keyPair
	saKeyPath string // service-account signing key (private)
	saPubPath string // its public half, for verification
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// newPKI creates a CA, an API server serving certificate for hosts, an admin
// client certificate (group system:masters) and a service-account key pair.
func newPKI(dir, clusterName string, hosts []string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating PKI directory: %w", err)
	}
	p := &pki{dir: dir}
	caKey, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	caCert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: clusterName + "-ca"}, caKey)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	p.ca = keyPair{cert: caCert, key: caKey}
	if err := p.ca.write(dir, "ca"); err != nil {
		return nil, err
	}

	var ips []net.IP
	var names []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, h)
		}
	}
	// The in-cluster service address and names, so that in-cluster clients verify too.
	ips = append(ips, net.ParseIP("10.96.0.1"))
	names = append(names, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local")
	if p.apiserver, err = p.issue(dir, "apiserver", pkix.Name{CommonName: "kube-apiserver"}, ips, names,
		x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if p.admin, err = p.issue(dir, "admin", pkix.Name{CommonName: "fornax-admin", Organization: []string{"system:masters"}},
		nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}

	saKey, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("generating service-account key: %w", err)
	}
	p.saKeyPath = filepath.Join(dir, "sa.key")
	p.saPubPath = filepath.Join(dir, "sa.pub")
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(saKey)
	if err != nil {
		return nil, fmt.Errorf("encoding service-account key: %w", err)
	}
	pubPEM, err := encodePublicKeyPEM(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := keyutil.WriteKey(p.saKeyPath, keyPEM); err != nil {
		return nil, fmt.Errorf("writing service-account key: %w", err)
	}
	if err := os.WriteFile(p.saPubPath, pubPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing service-account public key: %w", err)
	}
	return p, nil
}

// clientCert issues a client certificate signed by the cluster CA.
func (p *pki) clientCert(name string, subject pkix.Name) (keyPair, error) {
	return p.issue(p.dir, name, subject, nil, nil, x509.ExtKeyUsageClientAuth)
}

func (p *pki) issue(dir, name string, subject pkix.Name, ips []net.IP, dns []string, usage x509.ExtKeyUsage) (keyPair, error) {
	key, err := newKey()
	if err != nil {
		return keyPair{}, fmt.Errorf("generating key for %s: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return keyPair{}, fmt.Errorf("generating serial for %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.cert, key.Public(), p.ca.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("signing certificate for %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, fmt.Errorf("parsing certificate for %s: %w", name, err)
	}
	kp := keyPair{cert: cert, key: key}
	return kp, kp.write(dir, name)
}

func (kp *keyPair) write(dir, name string) error {
	kp.certPath = filepath.Join(dir, name+".crt")
	kp.keyPath = filepath.Join(dir, name+".key")
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(kp.key)
	if err != nil {
		return fmt.Errorf("encoding key for %s: %w", name, err)
	}
	if err := certutil.WriteCert(kp.certPath, kp.certPEM()); err != nil {
		return fmt.Errorf("writing certificate for %s: %w", name, err)
	}
	if err := keyutil.WriteKey(kp.keyPath, keyPEM); err != nil {
		return fmt.Errorf("writing key for %s: %w", name, err)
	}
	return nil
}

// certPEM returns the PEM encoding of the certificate.
func (kp *keyPair) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw})
}

// keyPEM returns the PEM encoding of the private key.
func (kp *keyPair) keyPEM() []byte {
	b, _ := keyutil.MarshalPrivateKeyToPEM(kp.key) // cannot fail for keys newKey made
	return b
}

func encodePublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
