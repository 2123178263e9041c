// Package sandbox starts local Kubernetes control planes for Tether's tests, sandbox and benchmarks: one host
// cluster and N member clusters, offline, with kwokctl's binary runtime and control-plane binaries built from their
// Go modules (see tools.go). Members get fake kwok nodes; the host gets none and runs no kwok controller, because
// its nodes are Tether's virtual nodes.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// HostName is the name of the host cluster; its kubeconfig is <Dir>/host.kubeconfig.
const HostName = "host"

// Config says which clusters to start and where to keep their state.
type Config struct {
	// Dir holds everything the harness writes: <cluster>.kubeconfig per cluster, kwok's workdir, the kubelet
	// client PKI of the host, logs and the state file. It is created if missing.
	Dir string
	// Prefix names the kwok clusters (<Prefix>-host, <Prefix>-m1, …) so that several harnesses can coexist.
	Prefix string
	// Members are the member clusters, in order.
	Members []MemberConfig
	// DisableQPSLimits lifts client rate limits and API priority and fairness on every control plane
	// (benchmarks). When false, the components keep their upstream defaults.
	DisableQPSLimits bool
	// NoMetricsServer leaves metrics-server out of the members (benchmarks: its scraping would be in the figures).
	// By default every member runs one, so that it serves metrics.k8s.io.
	NoMetricsServer bool
	// PortForwardTarget ("host:port") is where kwok sends every member pod's forwarded port. Empty: kwok
	// echoes the bytes back itself.
	PortForwardTarget string
	// AuditPolicy, when set, is an audit policy file (audit.k8s.io/v1 Policy) every kube-apiserver logs by, to
	// Cluster.AuditLog (benchmarks count requests per component with it). Auditing slows the apiserver down.
	AuditPolicy string
	// Tools are the binaries to run; see EnsureTools.
	Tools *Tools
	// Log receives one line per step. Nil discards.
	Log io.Writer
}

// MemberConfig describes one member cluster.
type MemberConfig struct {
	// Name is a DNS label; it names the kubeconfig (<Name>.kubeconfig).
	Name string
	// Nodes are the member's fake kwok nodes.
	Nodes []NodeConfig
}

// NodeConfig describes one fake kwok node.
type NodeConfig struct {
	// Name defaults to <member>-node-<index>.
	Name   string
	CPU    string
	Memory string
	Pods   int
	// Labels are added to the standard ones (type=kwok, kubernetes.io/hostname, kubernetes.io/os, …).
	Labels map[string]string
	Taints []corev1.Taint
}

// Defaults of a node when NodeConfig leaves them empty.
const (
	DefaultNodeCPU    = "16"
	DefaultNodeMemory = "64Gi"
	DefaultNodePods   = 110
)

// DefaultConfig is what the sandbox and the e2e suites start: a host and two members (see DefaultMembers).
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, Prefix: "tether", Members: DefaultMembers(2, 3, NodeConfig{})}
}

// DefaultMembers are n members m1…mn of the given number of nodes like tmpl, decorated so that tests and the sandbox
// can steer pods by label, zone and toleration: node j of each member is in zone zone-<j>, the last member's node 0
// has disktype=ssd, and the first member's node 1 (if any) a taint dedicated=special:NoSchedule.
func DefaultMembers(n, nodes int, tmpl NodeConfig) []MemberConfig {
	var ms []MemberConfig
	for i := range n {
		m := UniformMember(fmt.Sprintf("m%d", i+1), nodes, tmpl)
		for j := range m.Nodes {
			if m.Nodes[j].Labels == nil {
				m.Nodes[j].Labels = map[string]string{}
			}
			m.Nodes[j].Labels[ZoneLabel] = fmt.Sprintf("zone-%d", j)
		}
		ms = append(ms, m)
	}
	if n > 0 && nodes > 0 {
		ms[n-1].Nodes[0].Labels["disktype"] = "ssd"
	}
	if n > 0 && nodes > 1 {
		ms[0].Nodes[1].Taints = append(ms[0].Nodes[1].Taints, corev1.Taint{Key: "dedicated", Value: "special", Effect: corev1.TaintEffectNoSchedule})
	}
	return ms
}

// ZoneLabel is the well-known zone label the default members carry.
const ZoneLabel = "topology.kubernetes.io/zone"

// UniformMember returns a member of n nodes that all look like tmpl.
func UniformMember(name string, n int, tmpl NodeConfig) MemberConfig {
	m := MemberConfig{Name: name}
	for range n {
		node := tmpl
		node.Labels = maps.Clone(tmpl.Labels)
		node.Taints = append([]corev1.Taint(nil), tmpl.Taints...)
		m.Nodes = append(m.Nodes, node)
	}
	return m
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// complete fills defaults in place.
func (c *Config) complete() {
	if c.Prefix == "" {
		c.Prefix = "tether"
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	for i := range c.Members {
		m := &c.Members[i]
		for j := range m.Nodes {
			n := &m.Nodes[j]
			if n.Name == "" {
				n.Name = fmt.Sprintf("%s-node-%d", m.Name, j)
			}
			if n.CPU == "" {
				n.CPU = DefaultNodeCPU
			}
			if n.Memory == "" {
				n.Memory = DefaultNodeMemory
			}
			if n.Pods == 0 {
				n.Pods = DefaultNodePods
			}
		}
	}
}

// validate reports every problem at once.
func (c *Config) validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: must be set"))
	}
	if !dnsLabel.MatchString(c.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q: must be a DNS label", c.Prefix))
	}
	if c.Tools == nil {
		errs = append(errs, errors.New("tools: must be set (see EnsureTools)"))
	}
	seen := map[string]bool{HostName: true}
	for i, m := range c.Members {
		switch {
		case !dnsLabel.MatchString(m.Name):
			errs = append(errs, fmt.Errorf("members[%d].name %q: must be a DNS label", i, m.Name))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("members[%d].name %q: used twice (or reserved)", i, m.Name))
		}
		seen[m.Name] = true
		if len(m.Nodes) == 0 {
			errs = append(errs, fmt.Errorf("members[%d] (%s): needs at least one node", i, m.Name))
		}
		for j, n := range m.Nodes {
			for _, q := range []struct{ field, value string }{{"cpu", n.CPU}, {"memory", n.Memory}} {
				if _, err := resource.ParseQuantity(q.value); err != nil {
					errs = append(errs, fmt.Errorf("members[%d].nodes[%d].%s %q: %w", i, j, q.field, q.value, err))
				}
			}
			for k, v := range n.Labels {
				for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
					errs = append(errs, fmt.Errorf("members[%d].nodes[%d].labels %s=%s: %s", i, j, k, v, msg))
				}
			}
			if n.Pods < 0 {
				errs = append(errs, fmt.Errorf("members[%d].nodes[%d].pods %d: must not be negative", i, j, n.Pods))
			}
		}
	}
	return errors.Join(errs...)
}

// ParseLabels parses "k=v,k2=v2".
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// ParseMemberLabels parses "m2=disktype=ssd" or "m2/0=disktype=ssd" (only the first node of m2) and applies it.
func (c *Config) ParseMemberLabels(spec string) error {
	target, labels, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("member labels %q: want MEMBER[/NODE]=key=value[,key=value]", spec)
	}
	member, nodeIndex, hasIndex := strings.Cut(target, "/")
	parsed, err := ParseLabels(labels)
	if err != nil {
		return fmt.Errorf("member labels %q: %w", spec, err)
	}
	for i := range c.Members {
		m := &c.Members[i]
		if m.Name != member {
			continue
		}
		for j := range m.Nodes {
			if hasIndex && nodeIndex != strconv.Itoa(j) {
				continue
			}
			if m.Nodes[j].Labels == nil {
				m.Nodes[j].Labels = map[string]string{}
			}
			for k, v := range parsed {
				m.Nodes[j].Labels[k] = v
			}
			if hasIndex {
				return nil
			}
		}
		if hasIndex {
			return fmt.Errorf("member labels %q: member %s has no node %s", spec, member, nodeIndex)
		}
		return nil
	}
	return fmt.Errorf("member labels %q: no member named %q", spec, member)
}
