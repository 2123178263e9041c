// Package memberunschedulable is the MemberUnschedulable descheduler plugin: a pod bound to a Tether virtual node
// whose member scheduler has left it unschedulable for a while is evicted (Eviction API, through the descheduler's
// evictor) when another member can take it, and the pods its controller creates next avoid that member for a
// cool-down (the avoid record, api.Avoid, read by tether-webhook). README.md has the policy and every argument.
package memberunschedulable
