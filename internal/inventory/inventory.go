// Package inventory joins the sources: it asks each for its state, runs the PKI analysis over all of
// them together (anchors from one source verify chains from another) and hands the collector a
// snapshot. The analysis runs again only when a source's generation moves, so a scrape of an
// unchanged mesh does no certificate work.
package inventory

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
)

// Inventory is the current state of every source, analysed. It is safe for concurrent use.
type Inventory struct {
	sources  []model.Source
	meshes   map[model.Mesh]model.MeshSettings
	analyzer *pki.Analyzer
	judges   map[model.Mesh]Judge
	share    string

	mu          sync.Mutex
	generations []uint64
	// postureGenerations are the sources' posture generations the posture was judged at.
	postureGenerations []uint64
	analysis           model.Analysis
	posture            model.Posture
	// rotation is the blast radius of the analysis, computed again when the analysis changes or a
	// validity window on the way does.
	rotation model.Rotation
	// now is the clock the rotation is computed by.
	now      func() time.Time
	analysed bool
}

// Judge finds a mesh's posture in the posture records of that mesh and the running pods.
type Judge func(records []*model.PostureRecord, pods []*model.PodRecord, settings model.MeshSettings) model.Posture

// ReadShare names the share of the pods the sources read (sources.Sharding.Share), which every
// snapshot carries; call it before the first. Without it the share is "all".
func (inv *Inventory) ReadShare(share string) { inv.share = share }

// JudgePosture has judge find mesh's posture in every snapshot; call it before the first.
func (inv *Inventory) JudgePosture(mesh model.Mesh, judge Judge) {
	if inv.judges == nil {
		inv.judges = map[model.Mesh]Judge{}
	}
	inv.judges[mesh] = judge
}

// New returns an inventory of srcs. meshes are the configured settings of each mesh, which
// settings discovered by a source (a mesh's own config) override; rules judge each mesh's
// certificates; cache is the one the sources parse with.
func New(srcs []model.Source, meshes map[model.Mesh]model.MeshSettings, rules map[model.Mesh]pki.MeshRules, cache *pki.Cache) *Inventory {
	return &Inventory{sources: srcs, meshes: meshes, analyzer: pki.NewAnalyzer(cache, rules), now: time.Now}
}

// Snapshot returns the analysed state of all sources.
func (inv *Inventory) Snapshot() *model.Snapshot {
	states := make([]model.State, len(inv.sources))
	generations := make([]uint64, len(inv.sources))
	postureGenerations := make([]uint64, len(inv.sources))
	snap := &model.Snapshot{}
	for i, s := range inv.sources {
		st := s.State()
		states[i], generations[i], postureGenerations[i] = st, st.Generation, st.PostureGeneration
		snap.Sources = append(snap.Sources, model.SourceStatus{Name: s.Name(), Up: st.Up, Errors: withKnownReasons(s, st.Errors), LastSuccess: st.LastSuccess,
			Synced: st.Synced, Unread: st.Unread, ReadInterval: st.ReadInterval})
		if snap.Proxies == nil {
			snap.Proxies = slices.Clip(st.Proxies) // one proxy source, usually: no copy; a second appends to a copy
		} else {
			snap.Proxies = append(snap.Proxies, st.Proxies...)
		}
	}

	inv.mu.Lock()
	defer inv.mu.Unlock()
	analyse := !inv.analysed || !slices.Equal(generations, inv.generations)
	if analyse || !slices.Equal(postureGenerations, inv.postureGenerations) {
		var objects []*model.Object
		meshes := maps.Clone(inv.meshes)
		if meshes == nil {
			meshes = map[model.Mesh]model.MeshSettings{}
		}
		for _, st := range states {
			objects = append(objects, st.Objects...)
			for m, s := range st.Meshes {
				meshes[m] = meshes[m].Merge(s) // discovered settings over configured ones
			}
		}
		if analyse {
			version := inv.analysis.Version + 1
			inv.analysis = inv.analyzer.Analyze(objects, meshes)
			inv.analysis.Version = version
		}
		inv.posture = inv.judge(states, meshes)
		if analyse {
			inv.rotation = pki.RotationAt(inv.analysis, inv.now())
		}
		inv.generations, inv.postureGenerations, inv.analysed = generations, postureGenerations, true
	}
	if b := inv.rotation.Boundary; !b.IsZero() && !inv.now().Before(b) {
		inv.rotation = pki.RotationAt(inv.analysis, inv.now())
	}
	snap.Analysis = inv.analysis
	snap.Posture = inv.posture
	snap.Rotation = inv.rotation
	snap.Share = cmp.Or(inv.share, "all")
	return snap
}

// judge finds each judged mesh's posture in the sources' posture records, in the order of the
// meshes' names.
func (inv *Inventory) judge(states []model.State, meshes map[model.Mesh]model.MeshSettings) model.Posture {
	var out model.Posture
	for _, mesh := range slices.Sorted(maps.Keys(inv.judges)) {
		var (
			records []*model.PostureRecord
			pods    []*model.PodRecord
		)
		for _, st := range states {
			for _, r := range st.Posture {
				if r.Mesh == mesh {
					records = append(records, r)
				}
			}
			if pods == nil {
				pods = slices.Clip(st.Pods) // one pod watcher: no copy
			} else {
				pods = append(pods, st.Pods...)
			}
		}
		p := inv.judges[mesh](records, pods, meshes[mesh])
		out.Policies = append(out.Policies, p.Policies...)
		out.Namespaces = append(out.Namespaces, p.Namespaces...)
		out.Bypass = append(out.Bypass, p.Bypass...)
		out.Pods = append(out.Pods, p.Pods...)
	}
	return out
}

// Ready reports whether every source has read its material at least once.
func (inv *Inventory) Ready() bool {
	for _, s := range inv.sources {
		if !s.State().Synced {
			return false
		}
	}
	return true
}

// withKnownReasons returns errors with every reason the source lists and has not counted yet at 0.
func withKnownReasons(s model.Source, errors map[model.ErrorReason]uint64) map[model.ErrorReason]uint64 {
	l, ok := s.(model.ReasonLister)
	if !ok {
		return errors
	}
	out := make(map[model.ErrorReason]uint64, len(errors)+len(l.Reasons()))
	for _, r := range l.Reasons() {
		out[r] = 0
	}
	for r, n := range errors {
		out[r] = n
	}
	return out
}
