package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
)

const leaveLong = `Remove a member cluster from the host, and everything of Tether from the member.

Leave deletes the member Secret member-NAME that join wrote in the host. tether-node then stops serving the
member, deletes what it created there (pods, copies of ConfigMaps, Secrets, ServiceAccounts, Services and
claims, the namespaces it made) and the virtual node <prefix>NAME; leave waits for that (--timeout). Then it
deletes the identity join created in the member: the ClusterRoleBinding and ClusterRole tether-node, the token
Secret tether-node-token, the ServiceAccount tether-node and the namespace tether-system. Only objects that
Tether owns are deleted, each with a UID precondition.

Leave needs the member flags of join (--member-kubeconfig, or --api-server, --token and --ca-file), and they
must point at the cluster the member Secret names. If tether-node does not finish in time (it is not running,
or the member's objects are still terminating), leave stops and keeps the member identity so that tether-node
can finish; run it again, or give --force to remove the identity anyway and list what is left.`

const leaveExample = `  # Remove member east, with the kubeconfig it joined with
  tetherctl leave east --member-kubeconfig ~/.kube/east.yaml

  # Remove member edge, reached by address and token, even if tether-node is not running
  tetherctl leave edge --api-server https://10.0.0.7:6443 --token "$(cat edge.token)" --ca-file edge-ca.crt --force`

type leaveOptions struct {
	host    hostOptions
	member  memberOptions
	timeout time.Duration
	force   bool
}

func newLeaveCommand() *cobra.Command {
	var o leaveOptions
	cmd := &cobra.Command{
		Use:                   "leave NAME (--member-kubeconfig FILE [--member-context CONTEXT] | --api-server URL --token TOKEN --ca-file FILE)",
		DisableFlagsInUseLine: true,
		Short:                 "Remove a member cluster: its member Secret, what tether-node made in it, and its identity",
		Long:                  leaveLong,
		Example:               leaveExample,
		Args:                  exactlyOneName,
		ValidArgsFunction:     completeMembers(&o.host),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := o.leaver(cmd.Context(), args[0], cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return l.run(cmd.Context())
		},
	}
	o.host.addFlags(cmd, true)
	o.member.addFlags(cmd)
	cmd.Flags().DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for tether-node to clean the member and remove the virtual node, and for the member to delete tether-system")
	cmd.Flags().BoolVar(&o.force, "force", false, "remove the member identity even if tether-node did not finish (what it left is listed), or the virtual node is not served from a member Secret")
	return cmd
}

func (o *leaveOptions) leaver(ctx context.Context, name string, out io.Writer) (*leaver, error) {
	c, err := connect(ctx, name, o.timeout, &o.host, &o.member)
	if err != nil {
		return nil, err
	}
	host, member, ep, clusterID := c.host, c.member, c.endpoint, c.clusterID
	return &leaver{name: name, host: host, member: member, endpoint: ep, clusterID: clusterID, namespace: o.host.namespace,
		nodePrefix: o.host.nodePrefix, timeout: o.timeout, force: o.force, out: out, poll: 500 * time.Millisecond}, nil
}

// leaver removes one member.
type leaver struct {
	name          string
	host, member  kubernetes.Interface
	endpoint      endpoint
	clusterID     string
	namespace     string
	nodePrefix    string
	timeout, poll time.Duration
	force         bool
	out           io.Writer
}

func (l *leaver) run(ctx context.Context) error {
	if err := l.removeSecret(ctx); err != nil {
		return err
	}
	if err := l.waitCleanup(ctx); err != nil {
		if !l.force {
			return fmt.Errorf("%w\nthe member identity is kept so that tether-node can finish: run leave again, or add --force", err)
		}
		fmt.Fprintf(l.out, "warning: %v\n", err)
	}
	if err := l.removeIdentity(ctx); err != nil {
		return err
	}
	fmt.Fprintf(l.out, "member %s left\n", l.name)
	return nil
}

// removeSecret deletes the member Secret join wrote, after checking that the member flags name that cluster.
func (l *leaver) removeSecret(ctx context.Context) error {
	secrets, err := memberSecrets(ctx, l.host, l.namespace)
	if err != nil {
		return err
	}
	var errs []error
	var ours *metav1.ObjectMeta
	for i := range secrets {
		s := &secrets[i]
		if api.MemberOfSecret(s) != l.name {
			continue
		}
		if !tetherctlWrote(s, l.name) {
			errs = append(errs, fmt.Errorf("member %s is registered by Secret %s/%s, which tetherctl did not write: delete it yourself", l.name, s.Namespace, s.Name))
			continue
		}
		ep, err := endpointOfSecret(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ep.same(l.endpoint) {
			errs = append(errs, fmt.Errorf("member %s is the cluster at %s, but the member flags reach %s (or another CA): give the flags of that member", l.name, ep.Server, l.endpoint.Server))
			continue
		}
		ours = &s.ObjectMeta
	}
	node := api.NodeName(l.nodePrefix, l.name)
	if _, err := l.host.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil && ours == nil && len(errs) == 0 && !l.force {
		errs = append(errs, fmt.Errorf("node %s is not served from a member Secret (a --member flag of tether-node?): remove that first, or add --force", node))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ours == nil {
		fmt.Fprintf(l.out, "host: no member Secret for %s\n", l.name)
		return nil
	}
	err = l.host.CoreV1().Secrets(ours.Namespace).Delete(ctx, ours.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ours.UID))})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("host: delete Secret %s/%s: %w", ours.Namespace, ours.Name, err)
	}
	fmt.Fprintf(l.out, "host: secret/%s deleted\n", ours.Name)
	return nil
}

// waitCleanup waits until the virtual node is gone from the host and nothing tether-node made for it is left in
// the member.
func (l *leaver) waitCleanup(ctx context.Context) error {
	node := api.NodeName(l.nodePrefix, l.name)
	var left []string
	var last error
	err := wait.PollUntilContextTimeout(ctx, l.poll, l.timeout, true, func(ctx context.Context) (bool, error) {
		left, last = nil, nil
		_, err := l.host.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		switch {
		case err == nil:
			left = append(left, "host: node/"+node)
		case !apierrors.IsNotFound(err):
			last = err
			return false, nil
		}
		objs, err := tetherObjects(ctx, l.member, api.Owner{ClusterID: l.clusterID, NodeName: node})
		if err != nil {
			last = err
			return false, nil
		}
		left = append(left, objs...)
		return len(left) == 0, nil
	})
	if err == nil {
		fmt.Fprintf(l.out, "tether-node removed node %s and cleaned member %s\n", node, l.name)
		return nil
	}
	if last != nil {
		return fmt.Errorf("cleanup of member %s not seen within %s: %w", l.name, l.timeout, last)
	}
	return fmt.Errorf("tether-node did not finish within %s (is it running?); left: %s", l.timeout, strings.Join(left, ", "))
}

// tetherObjects lists what tether-node made in a member for owner: the objects with its ownership labels, and the
// namespaces Tether made there for owner's host cluster.
func tetherObjects(ctx context.Context, c kubernetes.Interface, owner api.Owner) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: owner.Selector()}
	nsSel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{
		api.LabelManagedBy: api.ManagedByTether, api.LabelHostCluster: owner.ClusterID}).String()}
	core := c.CoreV1()
	lists := []struct {
		kind string
		list func() ([]metav1.Object, error)
	}{
		{"pod", func() ([]metav1.Object, error) { l, err := core.Pods("").List(ctx, sel); return items(l, err) }},
		{"configmap", func() ([]metav1.Object, error) { l, err := core.ConfigMaps("").List(ctx, sel); return items(l, err) }},
		{"secret", func() ([]metav1.Object, error) { l, err := core.Secrets("").List(ctx, sel); return items(l, err) }},
		{"serviceaccount", func() ([]metav1.Object, error) {
			l, err := core.ServiceAccounts("").List(ctx, sel)
			return items(l, err)
		}},
		{"persistentvolumeclaim", func() ([]metav1.Object, error) {
			l, err := core.PersistentVolumeClaims("").List(ctx, sel)
			return items(l, err)
		}},
		{"service", func() ([]metav1.Object, error) { l, err := core.Services("").List(ctx, sel); return items(l, err) }},
		{"endpointslice", func() ([]metav1.Object, error) {
			l, err := c.DiscoveryV1().EndpointSlices("").List(ctx, sel)
			return items(l, err)
		}},
		{"namespace", func() ([]metav1.Object, error) { l, err := core.Namespaces().List(ctx, nsSel); return items(l, err) }},
	}
	var out []string
	var errs []error
	for _, l := range lists {
		objs, err := l.list()
		if err != nil {
			errs = append(errs, fmt.Errorf("list %ss in the member: %w", l.kind, err))
			continue
		}
		for _, o := range objs {
			name := o.GetName()
			if o.GetNamespace() != "" {
				name = o.GetNamespace() + "/" + name
			}
			out = append(out, "member: "+l.kind+"/"+name)
		}
	}
	return out, errors.Join(errs...)
}

// items views a list's items as metav1.Objects.
func items(list runtime.Object, err error) ([]metav1.Object, error) {
	if err != nil {
		return nil, err
	}
	objs, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]metav1.Object, 0, len(objs))
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// removeIdentity deletes the member identity, the binding first, the namespace last, each only if this host's join
// made it; then it waits until the namespace is gone.
func (l *leaver) removeIdentity(ctx context.Context) error {
	objs := identity(l.member)
	var errs []error
	nsDeleted := false
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		have, err := obj.get(ctx)
		if apierrors.IsNotFound(err) {
			fmt.Fprintf(l.out, "member %s: %s/%s not found\n", l.name, obj.kind, obj.name)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: get %s %s: %w", l.name, obj.kind, obj.name, err))
			continue
		}
		if err := ownedError(have, obj, l.clusterID); err != nil {
			fmt.Fprintf(l.out, "member %s: %s/%s left alone: %v\n", l.name, obj.kind, obj.name, err)
			continue
		}
		err = obj.delete(ctx, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(have.GetUID()))})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("member %s: delete %s %s: %w", l.name, obj.kind, obj.name, err))
			continue
		}
		nsDeleted = nsDeleted || obj.kind == "namespace"
		fmt.Fprintf(l.out, "member %s: %s/%s deleted\n", l.name, obj.kind, obj.name)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !nsDeleted {
		return nil
	}
	err := wait.PollUntilContextTimeout(ctx, l.poll, l.timeout, true, func(ctx context.Context) (bool, error) {
		_, err := l.member.CoreV1().Namespaces().Get(ctx, api.MemberNamespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("member %s: namespace %s still terminating after %s: %w", l.name, api.MemberNamespace, l.timeout, err)
	}
	return nil
}
