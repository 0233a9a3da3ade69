// Package charttest checks the Helm charts under deploy/helm, offline, in
// its tests: helm lint --strict and helm template through the Helm v4 SDK
// for the default values and every examples/*.yaml; a strict decode of each
// rendered manifest into the Kubernetes API types (unknown fields are
// errors); the chart's own rules (no latest tags, probes and limits on every
// container, secrets referenced and never inlined); values files the schema
// must reject; and the start-what-renders test, which runs each rendered
// workload's command, arguments, environment and ports in network
// namespaces, waits for its own readiness probe, and connects a Ferry node
// through the started rendezvous and relay.
//
// The package has no code of its own beyond this comment.
package charttest
