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

// Posture is what a mesh's posture judgement found: each peer authentication policy with its
// scope, and each namespace the mesh covers with its effective mode and whether it denies by
// default.
type Posture struct {
	Policies   []PolicyFinding
	Namespaces []NamespaceFinding
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
}
