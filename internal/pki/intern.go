package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"weak"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// minSweep is the number of entries below which a weakTable does not look for dead ones.
const minSweep = 1024

// weakTable shares immutable values by key between everything that builds an equal one. It holds
// weak pointers, so a value nothing refers to any more is collected. The entries of collected
// values are removed when the map has doubled since the last sweep: a cleanup function per value
// would remove them sooner, but cost a tenth of a kilobyte for each of ten thousand leaves, and at
// most half of the entries are ever dead. It is safe for concurrent use.
type weakTable[K comparable, V any] struct {
	mu      sync.Mutex
	m       map[K]weak.Pointer[V]
	sweepAt int // the size at which dead entries are next removed
}

func newWeakTable[K comparable, V any]() *weakTable[K, V] {
	return &weakTable[K, V]{m: map[K]weak.Pointer[V]{}, sweepAt: minSweep}
}

// get returns the live value stored under k, or nil.
func (t *weakTable[K, V]) get(k K) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k].Value()
}

// share returns the live value stored under k, or stores v there and returns it.
func (t *weakTable[K, V]) share(k K, v *V) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	if live := t.m[k].Value(); live != nil {
		return live
	}
	t.m[k] = weak.Make(v)
	if len(t.m) >= t.sweepAt {
		t.sweep()
	}
	return v
}

// sweep removes the entries of collected values and sets the next sweep at twice the live
// entries, so the work is constant per value stored and dead entries never outnumber live ones by
// more than minSweep. It runs under t.mu.
func (t *weakTable[K, V]) sweep() {
	for k, wp := range t.m {
		if wp.Value() == nil {
			delete(t.m, k)
		}
	}
	t.sweepAt = max(2*len(t.m), minSweep)
}

// size is the number of entries, live or dead.
func (t *weakTable[K, V]) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// certificates shares one parsed certificate between every bundle that holds the same DER: ten
// thousand proxies present the same intermediate and root, five thousand Secrets the same ca.crt.
// Certificates are immutable once built, which makes sharing them safe.
var certificates = newWeakTable[[sha256.Size]byte, model.Certificate]()

// sharedCertificate returns the shared certificate for der, parsing it only when no live copy
// exists.
func sharedCertificate(der []byte) (*model.Certificate, error) {
	fp := sha256.Sum256(der)
	if c := certificates.get(fp); c != nil {
		return c, nil
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	// Parsed concurrently by another bundle: the first one stored is kept.
	return certificates.share(fp, NewCertificate(x)), nil
}

// chains shares one Chain between the certificates whose paths above them are the same: the
// workload leaves of one issuer.
var chains = newWeakTable[[sha256.Size]byte, model.Chain]()

// sharedChain returns the shared chain equal to ch.
func sharedChain(ch *model.Chain) *model.Chain {
	// Lengths first, so that no two chains write the same bytes.
	h := sha256.New()
	h.Write([]byte{byte(len(ch.Reason)), byte(len(ch.Paths))})
	h.Write([]byte(ch.Reason))
	for _, path := range append(ch.Paths, ch.Partial) {
		h.Write([]byte{byte(len(path))})
		for _, c := range path {
			h.Write(c.Fingerprint[:])
		}
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return chains.share(k, ch)
}
