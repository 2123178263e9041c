package app

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
)

const statusLong = `Show every member cluster, one line each, from host objects only (no member is contacted):

  MEMBER      the member's name
  NODE        its virtual node, <none> while tether-node has not registered it
  READY       the node's Ready condition (True, False, Unknown)
  REASON      why: MemberReady, MemberUnreachable, NoUsableNodes, MemberSyncing
  PODS        pods on the node that have not terminated / pods the node allows
  CPU, MEMORY allocatable on the node (what the member's usable nodes have free for Tether)
  VERSION     the member's Kubernetes version
  HEARTBEAT   time since tether-node last renewed the node's lease
  SECRET      the member Secret that registers it, <none> for a member from a --member flag of tether-node

Members come from the member Secrets in Tether's namespace and from the virtual nodes labelled ` + api.LabelMember + `.`

const statusExample = `  # The members of the current context's host
  tetherctl status

  # Of another host, without the header line
  tetherctl status --kubeconfig host.yaml --no-headers`

type statusOptions struct {
	host      hostOptions
	noHeaders bool
}

func newStatusCommand() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:               "status",
		Short:             "One line per member cluster: virtual node, readiness, pods, capacity, version, heartbeat",
		Long:              statusLong,
		Example:           statusExample,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, err := o.host.client()
			if err != nil {
				return err
			}
			rows, err := memberStatus(cmd.Context(), host, o.host.namespace, o.host.nodePrefix)
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), rows, time.Now(), o.noHeaders)
		},
	}
	o.host.addFlags(cmd, false)
	cmd.Flags().BoolVar(&o.noHeaders, "no-headers", false, "do not print the header line")
	return cmd
}

// statusRow is one member as status shows it. Empty strings are printed as <none>.
type statusRow struct {
	Member, Node, Ready, Reason string
	Pods                        int
	AllowedPods                 *resource.Quantity
	CPU, Memory                 *resource.Quantity
	Version                     string
	Heartbeat                   *time.Time
	Secret                      string
}

// memberStatus reads the members from the host: member Secrets, virtual nodes, their pods and leases.
func memberStatus(ctx context.Context, host kubernetes.Interface, namespace, prefix string) ([]statusRow, error) {
	rows := map[string]*statusRow{}
	row := func(member string) *statusRow {
		if rows[member] == nil {
			rows[member] = &statusRow{Member: member}
		}
		return rows[member]
	}
	secrets, err := memberSecrets(ctx, host, namespace)
	if err != nil {
		return nil, err
	}
	for i := range secrets {
		r := row(api.MemberOfSecret(&secrets[i]))
		if r.Secret != "" {
			r.Secret += ","
		}
		r.Secret += secrets[i].Name
	}
	sel := labels.SelectorFromSet(labels.Set{api.NodeTypeKey: api.NodeType}).String()
	nodes, err := host.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list virtual nodes: %w", err)
	}
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if member := n.Labels[api.LabelMember]; member != "" {
			byName[n.Name] = n
			row(member)
		}
	}
	for member, r := range rows {
		n := byName[api.NodeName(prefix, member)]
		if n == nil {
			continue
		}
		if err := nodeStatus(ctx, host, n, r); err != nil {
			return nil, err
		}
	}
	out := make([]statusRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out, nil
}

// nodeStatus fills r from the virtual node n, its pods and its lease.
func nodeStatus(ctx context.Context, host kubernetes.Interface, n *corev1.Node, r *statusRow) error {
	r.Node = n.Name
	r.Ready, r.Reason = string(corev1.ConditionUnknown), ""
	if c := readyCondition(n); c != nil {
		r.Ready, r.Reason = string(c.Status), c.Reason
	}
	if q, ok := n.Status.Allocatable[corev1.ResourcePods]; ok {
		r.AllowedPods = &q
	}
	if q, ok := n.Status.Allocatable[corev1.ResourceCPU]; ok {
		r.CPU = &q
	}
	if q, ok := n.Status.Allocatable[corev1.ResourceMemory]; ok {
		r.Memory = &q
	}
	r.Version = n.Status.NodeInfo.KubeletVersion
	pods, err := host.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String(), ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list pods of node %s: %w", n.Name, err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == n.Name && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			r.Pods++
		}
	}
	lease, err := host.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{})
	switch {
	case err == nil && lease.Spec.RenewTime != nil:
		t := lease.Spec.RenewTime.Time
		r.Heartbeat = &t
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("lease of node %s: %w", n.Name, err)
	}
	return nil
}

// printStatus prints rows as kubectl prints a table: upper-case headers, columns three spaces apart, <none> for
// what is not known.
func printStatus(w io.Writer, rows []statusRow, now time.Time, noHeaders bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	if !noHeaders {
		fmt.Fprintln(tw, "MEMBER\tNODE\tREADY\tREASON\tPODS\tCPU\tMEMORY\tVERSION\tHEARTBEAT\tSECRET")
	}
	for _, r := range rows {
		pods := "<none>"
		if r.Node != "" {
			pods = fmt.Sprintf("%d/%s", r.Pods, quantity(r.AllowedPods, false))
		}
		heartbeat := ""
		if r.Heartbeat != nil {
			heartbeat = duration.HumanDuration(now.Sub(*r.Heartbeat)) + " ago"
		}
		cells := []string{r.Member, none(r.Node), none(r.Ready), none(r.Reason), pods, quantity(r.CPU, false),
			quantity(r.Memory, true), none(r.Version), none(heartbeat), none(r.Secret)}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func none(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// quantity prints a resource amount; memory in binary units rounded down (kubectl top's Mi), for reading at a
// glance.
func quantity(q *resource.Quantity, memory bool) string {
	if q == nil {
		return "<none>"
	}
	if !memory {
		return q.String()
	}
	const gi, mi = 1 << 30, 1 << 20
	switch v := q.Value(); {
	case v >= 10*gi:
		return fmt.Sprintf("%dGi", v/gi)
	case v >= mi:
		return fmt.Sprintf("%dMi", v/mi)
	default:
		return q.String()
	}
}
