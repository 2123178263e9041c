package sandbox

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	cfg := DefaultConfig("/tmp/x")
	cfg.Tools = toolsIn("/tools", "/ms", "v1.36.3")
	cfg.complete()
	if err := cfg.validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	n := cfg.Members[1].Nodes[2]
	want := NodeConfig{Name: "m2-node-2", CPU: DefaultNodeCPU, Memory: DefaultNodeMemory, Pods: DefaultNodePods,
		Labels: map[string]string{ZoneLabel: "zone-2"}}
	if diff := cmp.Diff(want, n); diff != "" {
		t.Errorf("completed node (-want +got):\n%s", diff)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := Config{
		Prefix: "Bad_Prefix",
		Members: []MemberConfig{
			{Name: "host", Nodes: []NodeConfig{{CPU: "lots", Memory: "1Gi", Pods: -1, Labels: map[string]string{"bad key": "x"}}}},
			{Name: "m1"},
		},
	}
	err := cfg.validate()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, part := range []string{"dir: must be set", `prefix "Bad_Prefix"`, "tools: must be set", `"host": used twice (or reserved)`,
		"members[0].nodes[0].cpu", "members[0].nodes[0].pods -1", "members[0].nodes[0].labels bad key=x", "members[1] (m1): needs at least one node"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}
}

func TestParseMemberLabels(t *testing.T) {
	tests := []struct {
		spec    string
		want    []map[string]string // labels of m2's nodes
		wantErr string
	}{
		{spec: "m2=disktype=ssd", want: []map[string]string{{"disktype": "ssd"}, {"disktype": "ssd"}}},
		{spec: "m2/1=disktype=ssd,zone=b", want: []map[string]string{nil, {"disktype": "ssd", "zone": "b"}}},
		{spec: "m3=a=b", wantErr: `no member named "m3"`},
		{spec: "m2/5=a=b", wantErr: "has no node 5"},
		{spec: "m2=novalue", wantErr: "want key=value"},
		{spec: "m2", wantErr: "want MEMBER"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			cfg := Config{Members: []MemberConfig{UniformMember("m1", 2, NodeConfig{}), UniformMember("m2", 2, NodeConfig{})}}
			err := cfg.ParseMemberLabels(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []map[string]string
			for _, n := range cfg.Members[1].Nodes {
				got = append(got, n.Labels)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("m2 labels (-want +got):\n%s", diff)
			}
			for _, n := range cfg.Members[0].Nodes {
				if n.Labels != nil {
					t.Errorf("m1 got labels %v", n.Labels)
				}
			}
		})
	}
}

func TestUniformMemberCopiesLabels(t *testing.T) {
	m := UniformMember("m1", 2, NodeConfig{Labels: map[string]string{"a": "1"}})
	m.Nodes[0].Labels["a"] = "changed"
	if m.Nodes[1].Labels["a"] != "1" {
		t.Fatal("nodes share one label map")
	}
}

func TestKubeVersionLDFlags(t *testing.T) {
	got := kubeVersionLDFlags("v1.36.3")
	for _, want := range []string{"k8s.io/component-base/version.gitVersion=v1.36.3", "k8s.io/client-go/pkg/version.gitMinor=36",
		"k8s.io/component-base/version.gitMajor=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}
