package inventory

import (
	"context"
	"maps"
	"testing"

	"github.com/meshcert/meshcert-exporter/internal/model"
	"github.com/meshcert/meshcert-exporter/internal/pki"
	"github.com/meshcert/meshcert-exporter/internal/testmodel"
	"github.com/meshcert/meshcert-exporter/internal/testpki"
)

// fakeSource hands out a fixed state.
type fakeSource struct{ state model.State }

func (f *fakeSource) Name() string                  { return "fake" }
func (f *fakeSource) Run(ctx context.Context) error { return nil }
func (f *fakeSource) State() model.State            { return f.state }

func TestSnapshotAnalysesOnlyOnChange(t *testing.T) {
	root := testpki.Issue(testpki.Spec{CommonName: "root", CA: true, NotBefore: testpki.From(), NotAfter: testpki.Until()})
	obj := &model.Object{Source: "fake", Name: "a", Bundles: []model.Bundle{{Key: "ca.crt", Purpose: model.PurposeTrustBundle,
		Certificates: []*model.Certificate{pki.NewCertificate(root.X509)}}}}
	src := &fakeSource{state: model.State{Objects: []*model.Object{obj}, Generation: 1, Up: true}}
	other := &fakeSource{state: model.State{Synced: true}}
	inv := New([]model.Source{src, other}, nil, nil, pki.NewCache())

	first := inv.Snapshot()
	if len(testmodel.Certificates(first.Analysis)) != 1 || len(first.Sources) != 2 || !first.Sources[0].Up {
		t.Fatalf("snapshot = %+v", first)
	}
	if again := inv.Snapshot(); again.Version != first.Version || again.Objects[0] != first.Objects[0] {
		t.Error("an unchanged inventory was analysed again")
	}
	src.state.Objects, src.state.Generation = nil, 2
	if changed := inv.Snapshot(); len(testmodel.Certificates(changed.Analysis)) != 0 {
		t.Errorf("a removed object is still in the snapshot: %+v", testmodel.Certificates(changed.Analysis))
	}
	if inv.Ready() {
		t.Error("ready before every source synced")
	}
	src.state.Synced = true
	if !inv.Ready() {
		t.Error("not ready after every source synced")
	}
}

// listingSource is a source that lists the reasons it counts errors under.
type listingSource struct{ fakeSource }

func (l *listingSource) Reasons() []model.ErrorReason {
	return []model.ErrorReason{model.ReasonForbidden, model.ReasonTimeout}
}

// TestKnownReasonsStartAtZero: every reason a source lists is in the snapshot from the start, at
// 0, next to the ones it counted.
func TestKnownReasonsStartAtZero(t *testing.T) {
	src := &listingSource{fakeSource{state: model.State{Errors: map[model.ErrorReason]uint64{model.ReasonTimeout: 2, model.ReasonBadPEM: 1}}}}
	snap := New([]model.Source{src, &fakeSource{}}, nil, nil, pki.NewCache()).Snapshot()
	want := map[model.ErrorReason]uint64{model.ReasonForbidden: 0, model.ReasonTimeout: 2, model.ReasonBadPEM: 1}
	if got := snap.Sources[0].Errors; !maps.Equal(got, want) {
		t.Errorf("errors %v, want %v", got, want)
	}
	if got := snap.Sources[1].Errors; len(got) != 0 {
		t.Errorf("a source that lists no reasons: %v", got)
	}
}

// TestPostureJudgedWithoutAnalysis: a change to the posture records or the pods is judged again,
// with every source's pods, without analysing the certificates again.
func TestPostureJudgedWithoutAnalysis(t *testing.T) {
	certs := &fakeSource{state: model.State{Generation: 1}}
	pods := &fakeSource{state: model.State{Pods: []*model.PodRecord{{Namespace: "a", Name: "p"}}, PostureGeneration: 1}}
	inv := New([]model.Source{certs, pods}, nil, nil, pki.NewCache())
	var judged []int
	inv.JudgePosture("m", func(records []*model.PostureRecord, pods []*model.PodRecord, _ model.MeshSettings) model.Posture {
		judged = append(judged, len(pods))
		return model.Posture{Bypass: []model.BypassFinding{{Mesh: "m", Namespace: "a", Name: pods[len(pods)-1].Name, Reason: model.BypassNoProxy}}}
	})
	first := inv.Snapshot()
	pods.state.Pods = append(pods.state.Pods, &model.PodRecord{Namespace: "a", Name: "q"})
	pods.state.PostureGeneration++
	second := inv.Snapshot()
	if second.Version != first.Version {
		t.Error("a change of pods analysed the certificates again")
	}
	if len(judged) != 2 || judged[1] != 2 || second.Posture.Bypass[0].Name != "q" {
		t.Errorf("judged with %v pods, posture %+v", judged, second.Posture)
	}
	inv.Snapshot()
	if len(judged) != 2 {
		t.Error("an unchanged posture was judged again")
	}
}
