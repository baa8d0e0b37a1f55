package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certFiles serves a certificate from its PEM files and loads them again when they
// change (looked at no more than once a second, at a handshake), so a renewed
// certificate is served without a restart. A renewal that does not load (one file
// written and not yet the other, a key that does not match) keeps the previous
// certificate and is logged; the next look tries again.
type certFiles struct {
	certFile, keyFile string
	logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // the files' modification times when cert was loaded
	checked time.Time
}

// newCertFiles loads the certificate, which must load now.
func newCertFiles(certFile, keyFile string, logger *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, logger: logger}
	stamp, err := c.stamps()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, f := range []string{c.certFile, c.keyFile} {
		info, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("TLS: %w", err)
		}
		s[i] = info.ModTime()
	}
	return s, nil
}

// load reads the pair; c.mu is held or c is not yet shared.
func (c *certFiles) load(stamp [2]time.Time) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS: certificate %s with key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}

// GetCertificate is tls.Config's.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if stamp, err := c.stamps(); err != nil {
			c.logger.Warn("TLS certificate files unreadable; serving the one loaded before", "error", err)
		} else if stamp != c.stamp {
			if err := c.load(stamp); err != nil {
				c.logger.Warn("TLS certificate changed but does not load; serving the one loaded before", "error", err)
			} else {
				c.logger.Info("TLS certificate reloaded", "file", c.certFile)
			}
		}
	}
	return c.cert, nil
}

// tlsConfig returns the TLS configuration of a client that trusts caFile (empty: the
// system's roots) and, when certFile is set, presents that certificate (mutual TLS).
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS: %s holds no PEM certificate", caFile)
		}
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS: client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("TLS: a client certificate needs both its certificate and its key file")
	}
	return cfg, nil
}
