package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"weak"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// minSweep is the number of entries below which the interner does not look for dead ones.
const minSweep = 1024

// interner shares one parsed certificate between every bundle that holds the same DER: ten
// thousand proxies present the same intermediate and root, five thousand Secrets the same ca.crt.
// It holds weak pointers, so a certificate nothing refers to any more is collected. The entries
// of collected certificates are removed when the map has doubled since the last sweep: a cleanup
// function per certificate would remove them sooner, but cost a tenth of a kilobyte for each of
// ten thousand leaves, and at most half of the entries are ever dead. Certificates are immutable
// once built, which makes sharing them safe.
type interner struct {
	mu      sync.Mutex
	m       map[[sha256.Size]byte]weak.Pointer[model.Certificate]
	sweepAt int // the size at which dead entries are next removed
}

func newInterner() *interner {
	return &interner{m: map[[sha256.Size]byte]weak.Pointer[model.Certificate]{}, sweepAt: minSweep}
}

var certificates = newInterner()

// certificate returns the shared certificate for der, parsing it only when no live copy exists.
func (in *interner) certificate(der []byte) (*model.Certificate, error) {
	fp := sha256.Sum256(der)
	in.mu.Lock()
	if c := in.m[fp].Value(); c != nil {
		in.mu.Unlock()
		return c, nil
	}
	in.mu.Unlock()

	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := NewCertificate(x)

	in.mu.Lock()
	defer in.mu.Unlock()
	if live := in.m[fp].Value(); live != nil { // parsed concurrently by another bundle: keep the first
		return live, nil
	}
	in.m[fp] = weak.Make(c)
	if len(in.m) >= in.sweepAt {
		in.sweep()
	}
	return c, nil
}

// sweep removes the entries of collected certificates and sets the next sweep at twice the live
// entries, so the work is constant per certificate parsed and dead entries never outnumber live
// ones by more than minSweep. It runs under in.mu.
func (in *interner) sweep() {
	for fp, wp := range in.m {
		if wp.Value() == nil {
			delete(in.m, fp)
		}
	}
	in.sweepAt = max(2*len(in.m), minSweep)
}

// size is the number of entries, live or dead.
func (in *interner) size() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.m)
}
