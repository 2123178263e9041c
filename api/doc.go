// Package api holds every name that Tether's parts, its users and other tools rely on: the tether.io labels,
// annotations and Secret keys, the ownership labels and the Owner type, the virtual node's labels, taint and
// tolerations, default names, the JSON formats of the parked scheduling fields and the fragmentation digest with
// their strict decoders, the host-level key rule, and the member Secret format. docs/contracts.md documents each
// of them with who writes and who reads it.
//
// It is a leaf: it imports only k8s.io/api, k8s.io/apimachinery and the strict JSON decoder apimachinery itself
// uses (sigs.k8s.io/json), so that every part (and the scheduler module) imports it and no part imports another
// part for a name. Nothing outside this package spells these names out.
package api
