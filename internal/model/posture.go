package model

// PostureRecord is what a posture source keeps of one object that decides how a mesh enforces
// its identities: a peer authentication policy, an authorization policy, or a namespace. Like
// every model record it is immutable once handed out.
type PostureRecord struct {
	Mesh Mesh
	// Kind is what the object is: PostureKindPeerAuthentication, PostureKindAuthorization or
	// PostureKindNamespace.
	Kind            PostureKind
	Namespace, Name string
	// Created is the object's creation time in Unix seconds: a mesh applies the oldest of two
	// policies of equal scope.
	Created int64
	// Selector marks a policy that applies to the workloads it selects only, not its namespace.
	Selector bool
	// Mode is a peer authentication policy's mutual TLS mode (STRICT, PERMISSIVE, DISABLE, or
	// UNSET: inherited); PortOverrides counts the ports it sets another mode for.
	Mode          string
	PortOverrides int
	// Action is an authorization policy's action (ALLOW, DENY, AUDIT, CUSTOM); NoRules marks one
	// without rules, which for ALLOW matches nothing: everything it applies to is denied.
	Action  string
	NoRules bool
	// Enrolled marks a namespace whose workloads the mesh takes in (an injection or ambient
	// label).
	Enrolled bool
}

// PostureKind is the kind of object a PostureRecord is.
type PostureKind uint8

// The kinds of posture records.
const (
	PostureKindPeerAuthentication PostureKind = iota + 1
	PostureKindAuthorization
	PostureKindNamespace
)

// PodRecord is what the pod watcher keeps of a running pod for the posture judgement: which
// meshes take it in and whether it could reach around their proxies. Like every model record it is
// immutable once handed out.
type PodRecord struct {
	Namespace, Name string
	// Meshed are the meshes that take the pod in: their proxy runs in it, or it is enrolled in
	// a node proxy (Istio's ambient mode).
	Meshed []Mesh
	// HostNetwork marks a pod in the node's network namespace, where no redirect rule of a mesh
	// applies.
	HostNetwork bool
	// NetAdmin marks a pod of which a container that is not a mesh's own may rewrite the pod's
	// network rules: it adds NET_ADMIN or NET_RAW, or is privileged.
	NetAdmin bool
	// Policies are the pod's own overrides of a mesh's default policy (Linkerd's
	// config.linkerd.io/default-inbound-policy annotation); usually none.
	Policies []PodPolicy
}

// MeshedBy reports whether mesh takes the pod in.
func (p *PodRecord) MeshedBy(mesh Mesh) bool {
	for _, m := range p.Meshed {
		if m == mesh {
			return true
		}
	}
	return false
}

// PodPolicy is a pod's override of one mesh's default policy.
type PodPolicy struct {
	Mesh  Mesh
	Value string
}

// Reasons a pod could bypass a mesh's proxy (the reason label of meshcert_pod_bypass).
const (
	// BypassNetAdmin: a container that is not the mesh's own may rewrite the pod's redirect rules.
	BypassNetAdmin = "net_admin"
	// BypassHostNetwork: the pod is in the node's network, outside the mesh's redirection.
	BypassHostNetwork = "host_network"
	// BypassNoProxy: the pod runs without the mesh where the mesh requires it (a STRICT
	// namespace, or one whose injection is on).
	BypassNoProxy = "no_proxy"
)

// The states of a pod in meshcert_namespace_pods.
const (
	PodStateMeshed      = "meshed"
	PodStateUnmeshed    = "unmeshed"
	PodStateHostNetwork = "host_network"
)

// Posture is what a mesh's posture judgement found: each peer authentication policy with its
// scope, each namespace the mesh covers with its effective mode and whether it denies by default,
// the pods that could bypass the mesh, and each covered namespace's pods by state.
type Posture struct {
	Policies   []PolicyFinding
	Namespaces []NamespaceFinding
	Bypass     []BypassFinding
	Pods       []NamespacePods
}

// BypassFinding is one pod that could bypass its mesh's proxy, and why (a Bypass reason).
type BypassFinding struct {
	Mesh            Mesh
	Namespace, Name string
	Reason          string
}

// NamespacePods counts one covered namespace's running pods by state.
type NamespacePods struct {
	Mesh                          Mesh
	Namespace                     string
	Meshed, Unmeshed, HostNetwork int
}

// PolicyFinding is one peer authentication policy as its mesh applies it.
type PolicyFinding struct {
	Mesh            Mesh
	Namespace, Name string
	// Scope is mesh (the mesh-wide policy), namespace or workload.
	Scope         string
	Mode          string
	PortOverrides int
}

// NamespaceFinding is one namespace's effective posture.
type NamespaceFinding struct {
	Mesh      Mesh
	Namespace string
	// Mode is the mutual TLS mode in force for the whole namespace.
	Mode string
	// DefaultDeny is true when a policy denies every request no other policy allows.
	DefaultDeny bool
	// Enrolled marks a namespace whose workloads the mesh takes in (its injection is on).
	Enrolled bool
}
