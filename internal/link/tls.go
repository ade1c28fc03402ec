package link

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/fornax-edge/fornax/internal/certs"
)

// ServerTLS returns the hub's TLS configuration: TLS 1.3 only; a client
// certificate is verified against clientCAs when presented, and required by
// every call but Join (the hub checks per call).
func ServerTLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      clientCAs,
		NextProtos:     []string{"h2"},
	}
}

// ClientTLS returns the child's TLS configuration for a parent whose CA is
// known: the server must chain to roots, and getCert supplies the current
// client certificate (so a renewed one is used on the next connection without
// restarting anything).
func ClientTLS(roots *x509.CertPool, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              roots,
		GetClientCertificate: getCert,
		NextProtos:           []string{"h2"},
	}
}

// PinnedTLS returns the joining child's TLS configuration: it trusts the
// parent only if the parent's chain ends in a CA whose public key hash is
// caHash, and returns that CA through found. Host names are not checked: the
// pin is the trust anchor, as in kubeadm's token discovery.
func PinnedTLS(caHash string, found func(*x509.Certificate)) (*tls.Config, error) {
	if !certs.ValidHash(caHash) {
		return nil, fmt.Errorf("CA hash %q is not of the form sha256:<64 hex digits>; copy it from 'fornaxctl token create'", caHash)
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, //nolint:gosec // verified below against the pinned CA
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return errors.New("the parent did not send its CA certificate with its own")
			}
			chain := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return fmt.Errorf("parsing the parent's certificate: %w", err)
				}
				chain[i] = c
			}
			ca := chain[len(chain)-1]
			if got := certs.Hash(ca); got != caHash {
				return fmt.Errorf("the parent's CA hash is %s, not the pinned %s: refusing to join (wrong parent address, or a man in the middle)", got, caHash)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			inter := x509.NewCertPool()
			for _, c := range chain[1 : len(chain)-1] {
				inter.AddCert(c)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the parent's certificate is not signed by the pinned CA: %w", err)
			}
			if found != nil {
				found(ca)
			}
			return nil
		},
	}, nil
}
