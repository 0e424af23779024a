// Package sources reads certificate material (files, Kubernetes objects, proxies) into the neutral
// model. Each source parses what it reads when it changes, with package pki, and hands out
// immutable objects; the analysis and the collector never reach back into a source.
package sources

import (
	"maps"
	"slices"
	"sync"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/meshcert/meshcert-exporter/internal/model"
)

// stateHolder keeps a source's State behind a lock. Sources embed it.
type stateHolder struct {
	mu    sync.RWMutex
	state model.State
}

// State implements Source.
func (h *stateHolder) State() model.State {
	h.mu.RLock()
	defer h.mu.RUnlock()
	s := h.state
	s.Errors = maps.Clone(s.Errors)
	return s
}

// update changes the state under the lock; fn reports whether the objects changed, which moves
// the generation on.
func (h *stateHolder) update(fn func(s *model.State) (changed bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fn(&h.state) {
		h.state.Generation++
	}
}

// countError adds one error of reason to s.
func countError(s *model.State, reason model.ErrorReason) {
	if s.Errors == nil {
		s.Errors = map[model.ErrorReason]uint64{}
	}
	s.Errors[reason]++
}

// errorReporter counts and logs each failing bundle once: when it starts failing or its reason
// changes, not on every re-read, so a broken object neither floods the log nor inflates the counter.
type errorReporter struct {
	source  string
	logger  log.Logger
	last    map[string]model.ErrorReason
	skipped map[string]model.ErrorReason
	failing model.ErrorReason
}

func newErrorReporter(source string, logger log.Logger) *errorReporter {
	return &errorReporter{source: source, logger: logger, last: map[string]model.ErrorReason{}, skipped: map[string]model.ErrorReason{}}
}

// observeSkips counts and logs each path the source passes over once, when it starts being
// skipped or its reason changes, and forgets the ones that are no longer skipped.
func (r *errorReporter) observeSkips(s *model.State, skips map[string]model.ErrorReason) {
	for _, path := range slices.Sorted(maps.Keys(skips)) {
		reason := skips[path]
		if r.skipped[path] == reason {
			continue
		}
		countError(s, reason)
		level.Warn(r.logger).Log("msg", "path skipped", "source", r.source, "path", path, "reason", reason)
	}
	r.skipped = skips
}

// observe reports the bundle errors of objects into s and forgets the ones that are gone.
func (r *errorReporter) observe(s *model.State, objects []*model.Object) {
	now := make(map[string]model.ErrorReason)
	for _, o := range objects {
		for _, b := range o.Bundles {
			if b.Error == model.ReasonNone {
				continue
			}
			id := o.Namespace + "/" + o.Name + "/" + b.Key
			now[id] = b.Error
			if r.last[id] == b.Error {
				continue
			}
			countError(s, b.Error)
			level.Warn(r.logger).Log("msg", "certificate bundle cannot be read completely", "source", r.source,
				"namespace", o.Namespace, "name", o.Name, "key", b.Key, "reason", b.Error)
		}
	}
	r.last = now
}

// fail counts a failed attempt of the source itself and logs it when the reason differs from the
// previous failure's, so a source that stays broken logs once.
func (r *errorReporter) fail(s *model.State, reason model.ErrorReason, err error) {
	if r.failing != reason {
		level.Error(r.logger).Log("msg", "source cannot read", "source", r.source, "reason", reason, "err", err)
	}
	r.failing = reason
	countError(s, reason)
}

// recovered notes that the source works again and logs that once.
func (r *errorReporter) recovered() {
	if r.failing != model.ReasonNone {
		level.Info(r.logger).Log("msg", "source recovered", "source", r.source)
	}
	r.failing = model.ReasonNone
}

// bundleReasons are the reasons a bundle of certificate material can fail to be read for.
var bundleReasons = []model.ErrorReason{model.ReasonNoCertificate, model.ReasonBadPEM, model.ReasonBadDER,
	model.ReasonTooLarge, model.ReasonTooMany, model.ReasonIncomplete}

// watchReasons are the reasons a list or watch of the API server fails for.
var watchReasons = []model.ErrorReason{model.ReasonForbidden, model.ReasonUnavailable, model.ReasonTimeout}

// proxyReasons are the reasons a read of a proxy's admin endpoint fails for.
var proxyReasons = []model.ErrorReason{model.ReasonTimeout, model.ReasonRefused, model.ReasonForbidden,
	model.ReasonBadResponse, model.ReasonUnknownShape, model.ReasonTooLarge, model.ReasonUnavailable}

// reasons joins reason lists without repeats, in order.
func reasons(lists ...[]model.ErrorReason) []model.ErrorReason {
	var out []model.ErrorReason
	for _, l := range lists {
		for _, r := range l {
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

var (
	_ model.ReasonLister = (*Kube)(nil)
	_ model.ReasonLister = (*Files)(nil)
	_ model.ReasonLister = (*PodWatcher)(nil)
	_ model.ReasonLister = (*Proxies)(nil)
	_ model.ReasonLister = (*Resources)(nil)
)

// Reasons implements ReasonLister.
func (k *Kube) Reasons() []model.ErrorReason {
	return reasons(bundleReasons, []model.ErrorReason{model.ReasonBadConfig}, watchReasons)
}

// Reasons implements ReasonLister.
func (f *Files) Reasons() []model.ErrorReason {
	return reasons(bundleReasons, []model.ErrorReason{model.ReasonReadError, model.ReasonNoMatch, model.ReasonDanglingLink, model.ReasonNotAFile})
}

// Reasons implements ReasonLister.
func (p *PodWatcher) Reasons() []model.ErrorReason { return watchReasons }

// Reasons implements ReasonLister.
func (p *Proxies) Reasons() []model.ErrorReason { return reasons(proxyReasons, bundleReasons) }
