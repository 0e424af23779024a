package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"runtime"
	"sync"
	"weak"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// interner shares one parsed certificate between every bundle that holds the same DER: ten
// thousand proxies present the same intermediate and root, five thousand Secrets the same ca.crt.
// It holds weak pointers, so a certificate nothing refers to any more is collected and its entry
// removed. Certificates are immutable once built, which makes sharing them safe.
type interner struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]weak.Pointer[model.Certificate]
}

var certificates = &interner{m: map[[sha256.Size]byte]weak.Pointer[model.Certificate]{}}

// certificate returns the shared certificate for der, parsing it only when no live copy exists.
func (in *interner) certificate(der []byte) (*model.Certificate, error) {
	fp := sha256.Sum256(der)
	in.mu.Lock()
	if wp, ok := in.m[fp]; ok {
		if c := wp.Value(); c != nil {
			in.mu.Unlock()
			return c, nil
		}
	}
	in.mu.Unlock()

	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := NewCertificate(x)

	in.mu.Lock()
	defer in.mu.Unlock()
	if wp, ok := in.m[fp]; ok { // parsed concurrently by another bundle: keep the first
		if live := wp.Value(); live != nil {
			return live, nil
		}
	}
	wp := weak.Make(c)
	in.m[fp] = wp
	runtime.AddCleanup(c, func(fp [sha256.Size]byte) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if cur, ok := in.m[fp]; ok && cur == wp {
			delete(in.m, fp)
		}
	}, fp)
	return c, nil
}

// size is the number of entries, live or waiting for their cleanup.
func (in *interner) size() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.m)
}
