package collector

import (
	"strconv"
	"strings"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// objectBoundary is the first instant after now at which the validity of one of the object's
// chains can change (a NotBefore reached, a NotAfter passed, of any certificate on any path), or
// zero when none will.
func objectBoundary(oa *model.ObjectAnalysis, now time.Time) time.Time {
	var next time.Time
	for i := range oa.Certificates {
		o := &oa.Certificates[i]
		if o.Chain == nil {
			continue
		}
		// The chain is shared with other certificates: read it, never append to it.
		next = certBoundary(next, o.Certificate, now)
		for _, path := range o.Chain.Paths {
			for _, cert := range path {
				next = certBoundary(next, cert, now)
			}
		}
		for _, cert := range o.Chain.Partial {
			next = certBoundary(next, cert, now)
		}
	}
	return next
}

// certBoundary returns the earlier of next and the first instant after now at which c's validity
// changes: its NotBefore reached, or its NotAfter passed (expired once strictly after NotAfter).
func certBoundary(next time.Time, c *model.Certificate, now time.Time) time.Time {
	next = earlierAfter(next, c.NotBefore(), now)
	return earlierAfter(next, c.NotAfter().Add(time.Nanosecond), now)
}

// earlierAfter returns t when it is after now and before next (or next is zero), else next.
func earlierAfter(next, t, now time.Time) time.Time {
	if t.After(now) && (next.IsZero() || t.Before(next)) {
		return t
	}
	return next
}

// familyHeader returns a family's HELP and TYPE lines.
func familyHeader(f Family) []byte {
	header := make([]byte, 0, len(f.Help)+2*len(f.Name)+32)
	header = append(header, "# HELP "...)
	header = append(header, f.Name...)
	header = append(header, ' ')
	header = append(header, escapeHelp(f.Help)...)
	header = append(header, "\n# TYPE "...)
	header = append(header, f.Name...)
	header = append(header, ' ')
	header = append(header, f.Type...)
	return append(header, '\n')
}

// appendSample writes one sample: name{labels} v.
func appendSample(b []byte, name string, labels []byte, v float64) []byte {
	b = append(b, name...)
	b = append(b, '{')
	b = append(b, labels...)
	b = append(b, "} "...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// appendSampleWith writes one sample whose labels continue with what extra appends (each label
// after a comma, or first when labels is empty), without building them separately.
func appendSampleWith(b []byte, name string, labels []byte, v float64, extra func([]byte) []byte) []byte {
	b = append(b, name...)
	b = append(b, '{')
	b = append(b, labels...)
	b = extra(b)
	b = append(b, "} "...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	return append(b, '\n')
}

// appendLabel writes name="value" with the text format's escapes, after a comma unless first.
func appendLabel(b []byte, name, value string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		switch ch := value[i]; ch {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}

// escapeHelp escapes a help text as the text format wants it.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
