package pkiapi

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// A parameter that names a certificate (remove_anchor, remove_issuer, issuer) takes it the way the
// usual tools print it, and is resolved against the CA certificates the exporter holds before any
// verdict: a value that names none is a 404, never an empty "nothing breaks".
//
// The readings of a value:
//   - a serial in hex: any case, leading zeros or not, colon-separated (`openssl x509 -text`),
//     with 0x, or as `openssl x509 -serial` prints it (serial=08FC...);
//   - a serial in decimal, as `step certificate inspect` prints it;
//   - a SHA-256 fingerprint: 64 hex digits, colons or not (`openssl x509 -fingerprint -sha256`).
//
// A string of decimal digits is both a hex and a decimal serial; 64 hex digits are both a serial and
// a fingerprint. When the readings name different certificates the value is refused (400) with the
// candidates, so that the person names the one meant by its fingerprint.

// Reading is one way a certificate parameter's value was read.
type Reading string

// The readings of a certificate parameter.
const (
	ReadingHexSerial     Reading = "hex_serial"
	ReadingDecimalSerial Reading = "decimal_serial"
	ReadingFingerprint   Reading = "sha256_fingerprint"
)

// Candidate is one certificate a parameter's value named in one reading.
type Candidate struct {
	Reading     Reading `json:"reading"`
	Mesh        string  `json:"mesh"`
	Subject     string  `json:"subject"`
	Serial      string  `json:"serial"`
	Fingerprint string  `json:"fingerprint"`
}

// Matched is a CA certificate a question named, and every place the exporter found it.
type Matched struct {
	CA
	// Meshes are the meshes it is a CA of.
	Meshes []string `json:"meshes"`
	// Anchor is true when it is a current trust anchor of one of them.
	Anchor bool `json:"anchor"`
	// Where are the locations of its copies that the exporter read; empty for a CA known only
	// from the chains of other certificates.
	Where []Location `json:"where"`
}

// refError is a certificate parameter that names no certificate, or several.
type refError struct {
	status     int
	msg        string
	candidates []Candidate
}

func (e *refError) Error() string { return e.msg }

// knownCA is a CA certificate the exporter holds, with where it found it.
type knownCA struct {
	cert   *model.Certificate
	meshes []model.Mesh
	anchor bool
	where  []Location
}

// eachCA calls visit for the CA certificates of mesh (every mesh when empty) in snap: the current
// anchors, the signing CAs, every CA certificate an object holds (with its location) and every CA
// on a chain (without). A certificate may be visited many times; visit must be cheap for one that
// does not interest it.
func eachCA(snap *model.Snapshot, mesh model.Mesh, visit func(c *model.Certificate, m model.Mesh, anchor bool, where *Location)) {
	for _, m := range snap.Meshes {
		if mesh != "" && m.Mesh != mesh {
			continue
		}
		for _, a := range m.Anchors {
			visit(a, m.Mesh, true, nil)
		}
		for _, c := range m.Issuers {
			visit(c, m.Mesh, false, nil)
		}
	}
	for _, oa := range snap.Objects {
		o := oa.Object
		if mesh != "" && o.Mesh != mesh {
			continue
		}
		for i := range oa.Certificates {
			f := &oa.Certificates[i]
			if f.Certificate.IsCA() && !f.Certificate.Partial {
				visit(f.Certificate, o.Mesh, false, &Location{Source: o.Source, Namespace: o.Namespace, Name: o.Name, Key: f.Key})
			}
			if f.Chain == nil {
				continue
			}
			for _, p := range f.Chain.Paths {
				for _, c := range p {
					visit(c, o.Mesh, false, nil)
				}
			}
			for _, c := range f.Chain.Partial {
				visit(c, o.Mesh, false, nil)
			}
		}
	}
}

// readings are the ways v can be read, each with the certificate property it names in canonical
// form (a serial as model.Certificate.Serial writes it, a fingerprint as lowercase hex).
func readings(v string) (map[Reading]string, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if i := strings.LastIndexByte(v, '='); i >= 0 { // serial=08FC..., sha256 Fingerprint=AB:CD:...
		v = strings.TrimSpace(v[i+1:])
	}
	neg := strings.HasPrefix(v, "-")
	digits := strings.TrimPrefix(v, "-")
	prefixed := strings.HasPrefix(digits, "0x")
	digits = strings.TrimPrefix(digits, "0x")
	colons := strings.Contains(digits, ":")
	if colons {
		for _, g := range strings.Split(digits, ":") {
			if g == "" || len(g) > 2 {
				return nil, fmt.Errorf("%q is not colon-separated hex bytes", truncate(v))
			}
		}
		digits = strings.ReplaceAll(digits, ":", "")
	}
	if digits == "" || len(digits) > 128 {
		return nil, fmt.Errorf("%q is neither a serial (hex or decimal) nor a SHA-256 fingerprint", truncate(v))
	}
	if _, err := hex.DecodeString(digits + strings.Repeat("0", len(digits)%2)); err != nil {
		return nil, fmt.Errorf("%q is neither a serial (hex or decimal) nor a SHA-256 fingerprint", truncate(v))
	}
	out := map[Reading]string{}
	sign := ""
	if neg {
		sign = "-"
	}
	if n, ok := new(big.Int).SetString(digits, 16); ok {
		if n.Sign() != 0 {
			out[ReadingHexSerial] = sign + n.Text(16)
		} else {
			out[ReadingHexSerial] = "0"
		}
	}
	if !prefixed && !colons && strings.Trim(digits, "0123456789") == "" {
		if n, ok := new(big.Int).SetString(digits, 10); ok {
			if n.Sign() != 0 {
				out[ReadingDecimalSerial] = sign + n.Text(16)
			} else {
				out[ReadingDecimalSerial] = "0"
			}
		}
	}
	if !neg && !prefixed && len(digits) == 64 {
		out[ReadingFingerprint] = digits
	}
	return out, nil
}

// resolve finds the one CA certificate of mesh (every mesh when empty) in snap that param's value
// v names; with anchors, only current trust anchors count. It fails with 400 for a value that is
// no certificate name or names several certificates, and 404 for one that names none. Only the
// certificates that match are recorded: a question costs one pass over the snapshot's CAs.
func resolve(snap *model.Snapshot, mesh model.Mesh, param, v string, anchors bool) (*knownCA, *refError) {
	rs, err := readings(v)
	if err != nil {
		return nil, &refError{status: http.StatusBadRequest, msg: fmt.Sprintf("%v: %s: %v", errBadRequest, param, err)}
	}
	var fp [32]byte
	_, byFingerprint := rs[ReadingFingerprint]
	if byFingerprint {
		hex.Decode(fp[:], []byte(rs[ReadingFingerprint]))
	}
	hexSerial, hasHex := rs[ReadingHexSerial]
	decSerial, hasDec := rs[ReadingDecimalSerial]
	matched := map[[32]byte]*knownCA{}
	var order []*knownCA
	readingsOf := map[*knownCA][]Reading{}
	eachCA(snap, mesh, func(c *model.Certificate, m model.Mesh, anchor bool, where *Location) {
		var hit []Reading
		if hasHex && c.Serial == hexSerial {
			hit = append(hit, ReadingHexSerial)
		}
		if hasDec && c.Serial == decSerial {
			hit = append(hit, ReadingDecimalSerial)
		}
		if byFingerprint && c.Fingerprint == fp {
			hit = append(hit, ReadingFingerprint)
		}
		if len(hit) == 0 {
			return
		}
		k := matched[c.Fingerprint]
		if k == nil {
			k = &knownCA{cert: c}
			matched[c.Fingerprint] = k
			order = append(order, k)
		}
		k.anchor = k.anchor || anchor
		if !slices.Contains(k.meshes, m) {
			k.meshes = append(k.meshes, m)
		}
		if where != nil && !slices.Contains(k.where, *where) {
			k.where = append(k.where, *where)
		}
		for _, r := range hit {
			if !slices.Contains(readingsOf[k], r) {
				readingsOf[k] = append(readingsOf[k], r)
			}
		}
	})
	var found, others []*knownCA // others: matched, but not an anchor where one is asked for
	for _, k := range order {
		if anchors && !k.anchor {
			others = append(others, k)
		} else {
			found = append(found, k)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var candidates []Candidate
		for _, k := range found {
			for _, r := range readingsOf[k] {
				for _, m := range k.meshes {
					candidates = append(candidates, Candidate{Reading: r, Mesh: string(m), Subject: k.cert.Subject, Serial: k.cert.Serial, Fingerprint: fingerprint(k.cert)})
				}
			}
		}
		slices.SortStableFunc(candidates, func(a, b Candidate) int { return cmp.Compare(a.Fingerprint, b.Fingerprint) })
		return nil, &refError{status: http.StatusBadRequest, candidates: candidates,
			msg: fmt.Sprintf("%v: %s=%q names %d different certificates; name the one you mean by its SHA-256 fingerprint", errBadRequest, param, truncate(v), len(found))}
	case len(others) > 0:
		return nil, &refError{status: http.StatusNotFound,
			msg: fmt.Sprintf("%s=%q names %s (serial %s), which is not a current trust anchor of any mesh read; to ask about a CA that is not an anchor use remove_issuer", param, truncate(v), others[0].cert.Subject, others[0].cert.Serial)}
	}
	return nil, &refError{status: http.StatusNotFound,
		msg: fmt.Sprintf("%s=%q names no CA certificate the exporter holds (read as %s): no verdict. Check the value, the mesh, and that the sources that read it are up", param, truncate(v), readingNames(rs))}
}

// readingNames lists the readings of a value, for an error.
func readingNames(rs map[Reading]string) string {
	var out []string
	for _, r := range []Reading{ReadingHexSerial, ReadingDecimalSerial, ReadingFingerprint} {
		if v, ok := rs[r]; ok {
			out = append(out, string(r)+" "+v)
		}
	}
	return strings.Join(out, ", ")
}

// matched describes k at now.
func (k *knownCA) matched(now time.Time) Matched {
	m := Matched{CA: caAt(k.cert, now), Anchor: k.anchor, Where: slices.Clone(k.where)}
	for _, mesh := range k.meshes {
		m.Meshes = append(m.Meshes, string(mesh))
	}
	if m.Where == nil {
		m.Where = []Location{}
	}
	return m
}

// fingerprint is c's SHA-256 fingerprint in lowercase hex.
func fingerprint(c *model.Certificate) string { return hex.EncodeToString(c.Fingerprint[:]) }
