package model

import (
	"context"
	"time"
)

// Source reads certificate material from one kind of place. Package sources has the mechanisms
// (Kubernetes watches, files, proxy polling); the inventory joins what every source holds.
type Source interface {
	// Name is the source's value of the `source` label in its health metrics.
	Name() string
	// Run reads and watches until ctx is done. It returns early only when the source cannot work at
	// all; failures to read single objects are reported through State.
	Run(ctx context.Context) error
	// State returns the source's current objects and health. The returned objects must not be
	// modified.
	State() State
}

// ReasonLister is implemented by a source that knows every reason it may count an error under:
// the inventory exports each of them from the start, at 0, so that a rate or an alert on the
// first error has a series to compare with.
type ReasonLister interface {
	Reasons() []ErrorReason
}

// State is what a source knows now.
type State struct {
	// Objects are the source's current objects, in a stable order. They are never modified after
	// they are handed out; a change replaces them.
	Objects []*Object
	// Generation changes whenever Objects or Meshes change, so readers can skip unchanged states.
	Generation uint64
	// Up is true when the last attempt to read worked.
	Up bool
	// Synced is true once the source has read its material completely at least once.
	Synced bool
	// Errors counts read errors by reason since start.
	Errors map[ErrorReason]uint64
	// Meshes holds mesh settings the source discovered (for example from a mesh's config map).
	Meshes map[Mesh]MeshSettings
	// Proxies is the health of each proxy a proxy source reads. Like Objects, the slice and its
	// records are never modified once handed out.
	Proxies []*ProxyStatus
	// Unread counts the proxies a proxy source knows of and has not tried to read yet.
	Unread int
	// ReadInterval is, for a source that reads proxies, the time between two reads of one.
	ReadInterval time.Duration
	// Posture are the policies and namespaces a posture source read, in a stable order; like
	// Objects, never modified once handed out.
	Posture []*PostureRecord
	// Pods are the running pods the pod watcher keeps for the posture judgement; like Objects,
	// never modified once handed out.
	Pods []*PodRecord
	// PostureGeneration changes whenever Posture or Pods change: the posture is judged again
	// without analysing the certificates again.
	PostureGeneration uint64
	// LastSuccess is the time the objects are current as of: the last successful read, or for a
	// watch, the last moment it was known healthy. During an outage it stops moving.
	LastSuccess time.Time
}
