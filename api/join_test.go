package api

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestJoinContractValues(t *testing.T) {
	for got, want := range map[string]string{
		MemberNamespace: "tether-system", MemberIdentity: "tether-node", MemberTokenSecret: "tether-node-token",
		LabelJoinedBy: "tether.io/joined-by", JoinFieldManager: "tetherctl", MemberSecretName("m1"): "member-m1",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// The member identity is least privilege: no wildcard, nothing that grants rights or takes another identity, no
// write to nodes, and every subresource the kubelet API relay uses.
func TestMemberRulesLeastPrivilege(t *testing.T) {
	forbidden := []string{"*", "escalate", "bind", "impersonate", "deletecollection"}
	can := map[string]map[string]bool{} // group/resource → verbs
	for _, r := range MemberRules() {
		for _, v := range r.Verbs {
			if slices.Contains(forbidden, v) {
				t.Errorf("rule %+v: verb %q", r, v)
			}
		}
		for _, list := range [][]string{r.APIGroups, r.Resources, r.ResourceNames, r.NonResourceURLs} {
			if slices.Contains(list, "*") {
				t.Errorf("rule %+v: wildcard", r)
			}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				key := g + "/" + res
				if can[key] == nil {
					can[key] = map[string]bool{}
				}
				for _, v := range r.Verbs {
					can[key][v] = true
				}
			}
		}
	}
	for _, want := range []struct {
		resource, verb string
		allowed        bool
	}{
		{"/pods", "create", true}, {"/pods", "delete", true}, {"/pods", "patch", true}, {"/pods", "update", false},
		{"/pods/log", "get", true}, {"/pods/exec", "create", true}, {"/pods/attach", "create", true},
		{"/pods/portforward", "create", true}, {"/pods/status", "update", false},
		{"/nodes", "list", true}, {"/nodes", "watch", true}, {"/nodes", "update", false}, {"/nodes", "delete", false},
		{"/nodes", "patch", false}, {"/nodes/status", "patch", false},
		{"/secrets", "create", true}, {"/secrets", "update", true}, {"/secrets", "delete", true},
		// Secrets are written, never read: no get, list or watch, and no patch (its answer is the whole object).
		{"/secrets", "get", false}, {"/secrets", "list", false}, {"/secrets", "watch", false}, {"/secrets", "patch", false},
		{"/secrets", "deletecollection", false}, {"/configmaps", "patch", true}, {"/resourcequotas", "create", true},
		{"/resourcequotas", "update", false},
		{"/serviceaccounts/token", "create", false},
		{"/events", "create", false}, {"/events", "watch", true},
		{"/namespaces", "create", true}, {"/namespaces", "update", false},
		{"discovery.k8s.io/endpointslices", "create", true},
		{"metrics.k8s.io/pods", "list", true},
		{"rbac.authorization.k8s.io/clusterrolebindings", "create", false},
		{"rbac.authorization.k8s.io/clusterroles", "escalate", false},
	} {
		if got := can[want.resource][want.verb]; got != want.allowed {
			t.Errorf("%s %s: allowed %v, want %v", want.verb, want.resource, got, want.allowed)
		}
	}
}

func TestJoinedBy(t *testing.T) {
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"ours", JoinLabels("host-a"), true},
		{"another host's", JoinLabels("host-b"), false},
		{"no labels", nil, false},
		{"managed but not joined", ManagedLabels(), false},
		{"joined label without managed-by", map[string]string{LabelJoinedBy: "host-a"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := JoinedBy(&metav1.ObjectMeta{Labels: c.labels}, "host-a"); got != c.want {
				t.Errorf("JoinedBy = %v, want %v", got, c.want)
			}
		})
	}
}
