package pkiapi

import (
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
)

// StaleReads is how many read intervals may pass since a proxy's last successful read before its
// certificates count as stale: the threshold of the MeshProxyReadStale alert.
const StaleReads = 3

// Status says how fresh an answer is: which sources fed it, whether each is up and has read its
// material, and how many proxies could not be read. An answer whose status is not complete may
// miss certificates, copies or problems: it is never an all-clear.
type Status struct {
	// Complete is true when every source is up and has read its material, and every proxy the
	// proxy sources know of was read within StaleReads of its interval.
	Complete bool           `json:"complete"`
	Sources  []SourceStatus `json:"sources"`
	Proxies  ProxyReads     `json:"proxies"`
}

// SourceStatus is one source's health.
type SourceStatus struct {
	Name string `json:"name"`
	// Up is false while the source's last attempt to read failed (an API server that does not
	// answer, a directory that is gone).
	Up bool `json:"up"`
	// Ready is true once the source has read its material completely at least once.
	Ready bool `json:"ready"`
	// LastSuccess is when its data was last known current (null: never): while it is down, the
	// moment it went blind.
	LastSuccess *time.Time `json:"last_success"`
}

// ProxyReads counts the proxies the proxy sources know of, by the state of their reads.
type ProxyReads struct {
	// Known are every proxy the proxy sources know of.
	Known int `json:"known"`
	// NeverRead were never read successfully (not tried yet, or every read failed).
	NeverRead int `json:"never_read"`
	// Failing were read before, but their last read failed.
	Failing int `json:"failing"`
	// Stale were last read successfully longer ago than StaleReads times their interval.
	Stale int `json:"stale"`
}

// statusOf is the status of snap at now.
func statusOf(snap *model.Snapshot, now time.Time) Status {
	st := Status{Complete: true, Sources: []SourceStatus{}}
	intervals := map[string]time.Duration{}
	for _, s := range snap.Sources {
		out := SourceStatus{Name: s.Name, Up: s.Up, Ready: s.Synced}
		if !s.LastSuccess.IsZero() {
			t := s.LastSuccess.UTC()
			out.LastSuccess = &t
		}
		st.Sources = append(st.Sources, out)
		st.Complete = st.Complete && s.Up && s.Synced
		intervals[s.Name] = s.ReadInterval
		st.Proxies.Known += s.Unread
		st.Proxies.NeverRead += s.Unread
	}
	for _, p := range snap.Proxies {
		st.Proxies.Known++
		switch {
		case p.LastSuccess.IsZero():
			st.Proxies.NeverRead++
		case intervals[p.Source] > 0 && now.Sub(p.LastSuccess) > StaleReads*intervals[p.Source]:
			st.Proxies.Stale++
		case !p.Up:
			st.Proxies.Failing++
		}
	}
	st.Complete = st.Complete && st.Proxies.NeverRead == 0 && st.Proxies.Stale == 0
	return st
}

// Down are the sources that are down or not ready.
func (s Status) Down() []SourceStatus {
	var out []SourceStatus
	for _, src := range s.Sources {
		if !src.Up || !src.Ready {
			out = append(out, src)
		}
	}
	return out
}
