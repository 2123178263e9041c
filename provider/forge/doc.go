// Package forge turns host objects into the member objects Tether creates, and member state back into host
// state, as pure functions: no clients, no caches, every rule a table test. The names it applies live in api.
package forge
