package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/registry"
)

const joinLong = `Join a member cluster to the host: tether-node will serve it as the virtual node <prefix>NAME.

In the member, join creates only tether-node's identity, by server-side apply and labelled as Tether's:
the namespace tether-system, the ServiceAccount tether-node, its long-lived token Secret tether-node-token,
and the ClusterRole and ClusterRoleBinding tether-node with the least-privilege rules tether-node needs
(docs/join.md lists them). In the host it then writes the member Secret member-NAME in Tether's namespace
(label ` + api.LabelMember + `=NAME, key kubeconfig: the member's server, CA and that token, nothing else), which a
running tether-node picks up within seconds.

Reach the member either with a kubeconfig (--member-kubeconfig, --member-context) or with its API address, a
bearer token and its CA (--api-server, --token, --ca-file); that identity must be allowed to create RBAC in
the member and is used for this command only. The host comes from --kubeconfig, then $KUBECONFIG, then
~/.kube/config, as with kubectl.

Joining again changes nothing. Join refuses a NAME already used by another member cluster, a member already
joined under another name, a virtual node of that name that no member Secret registers, and objects of the
names above in the member that Tether does not own. To rotate the token, delete the Secret tether-node-token in
the member's tether-system namespace and join again.`

const joinExample = `  # Join a cluster with a kubeconfig of an administrator of it
  tetherctl join east --member-kubeconfig ~/.kube/east.yaml

  # Pick a context of that kubeconfig, and wait until the virtual node is Ready
  tetherctl join west --member-kubeconfig ~/.kube/config --member-context west-admin --wait

  # Join a cluster from its API address, an administrator's token and its CA
  tetherctl join edge --api-server https://10.0.0.7:6443 --token "$(cat edge.token)" --ca-file edge-ca.crt

  # Against another host cluster than the current context
  tetherctl join east --member-kubeconfig east.yaml --kubeconfig host.yaml

  # Give the member's virtual node a kubelet API port of its own (its /stats/summary then answers for it alone)
  tetherctl join west --member-kubeconfig west.yaml --kubelet-port 10251`

type joinOptions struct {
	host        hostOptions
	member      memberOptions
	timeout     time.Duration
	wait        bool
	kubeletPort int
}

func newJoinCommand() *cobra.Command {
	var o joinOptions
	cmd := &cobra.Command{
		Use:                   "join NAME (--member-kubeconfig FILE [--member-context CONTEXT] | --api-server URL --token TOKEN --ca-file FILE)",
		DisableFlagsInUseLine: true,
		Short:                 "Join a member cluster: a least-privilege identity in it, its member Secret in the host",
		Long:                  joinLong,
		Example:               joinExample,
		Args:                  exactlyOneName,
		ValidArgsFunction:     cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := o.joiner(cmd.Context(), args[0], cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return j.run(cmd.Context())
		},
	}
	o.host.addFlags(cmd, true)
	o.member.addFlags(cmd)
	cmd.Flags().DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the member's token (and with --wait for the virtual node)")
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until tether-node serves the member and its virtual node is Ready")
	cmd.Flags().IntVar(&o.kubeletPort, "kubelet-port", 0, "a kubelet API port of its own for the member's virtual node (annotation "+api.AnnotationKubeletPort+" on the member Secret, as tether-node's --member-kubelet-port; 0: tether-node's --kubelet-port, shared)")
	return cmd
}

// exactlyOneName checks the NAME argument of join and leave.
func exactlyOneName(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want exactly one member NAME, got %d arguments", len(args))
	}
	return nil
}

func (o *joinOptions) joiner(ctx context.Context, name string, out io.Writer) (*joiner, error) {
	if o.kubeletPort < 0 || o.kubeletPort > 65535 {
		return nil, fmt.Errorf("--kubelet-port %d: want a port (1-65535), or 0 for none", o.kubeletPort)
	}
	c, err := connect(ctx, name, o.timeout, &o.host, &o.member)
	if err != nil {
		return nil, err
	}
	host, member, ep, clusterID := c.host, c.member, c.endpoint, c.clusterID
	return &joiner{name: name, host: host, member: member, endpoint: ep, clusterID: clusterID,
		namespace: o.host.namespace, nodePrefix: o.host.nodePrefix, timeout: o.timeout, wait: o.wait,
		kubeletPort: o.kubeletPort, out: out, poll: 500 * time.Millisecond, verify: verifyIdentity}, nil
}

// joiner joins one member.
type joiner struct {
	name          string
	host, member  kubernetes.Interface
	endpoint      endpoint
	clusterID     string
	namespace     string
	nodePrefix    string
	timeout, poll time.Duration
	wait          bool
	// kubeletPort, when not 0, goes on the member Secret as api.AnnotationKubeletPort.
	kubeletPort int
	out         io.Writer
	// verify checks the member kubeconfig before the host gets it (nil: not checked).
	verify func(ctx context.Context, kubeconfig []byte, timeout time.Duration) error
}

func (j *joiner) run(ctx context.Context) error {
	if err := j.checkHost(ctx); err != nil {
		return err
	}
	if err := j.checkMember(ctx); err != nil {
		return err
	}
	if err := j.applyIdentity(ctx); err != nil {
		return err
	}
	token, ca, err := j.waitToken(ctx)
	if err != nil {
		return err
	}
	ep := j.endpoint
	if len(ep.CA) == 0 {
		ep.CA = ca
	}
	if len(ep.CA) == 0 {
		return errors.New("no CA of the member: neither the member flags nor the token Secret give one")
	}
	raw, err := memberKubeconfig(j.name, ep, token)
	if err != nil {
		return err
	}
	if j.verify != nil {
		if err := j.verify(ctx, raw, j.timeout); err != nil {
			return err
		}
	}
	if err := j.writeMemberSecret(ctx, raw); err != nil {
		return err
	}
	node := api.NodeName(j.nodePrefix, j.name)
	if !j.wait {
		fmt.Fprintf(j.out, "member %s joined: tether-node serves it as node %s\n", j.name, node)
		return nil
	}
	if err := waitNodeReady(ctx, j.host, node, j.poll, j.timeout); err != nil {
		return fmt.Errorf("member %s joined, but: %w", j.name, err)
	}
	fmt.Fprintf(j.out, "member %s joined: node %s is Ready\n", j.name, node)
	return nil
}

// checkHost refuses a name that another member cluster uses, a cluster that is already a member under another
// name, and a virtual node of that name that no member Secret registers.
func (j *joiner) checkHost(ctx context.Context) error {
	secrets, err := memberSecrets(ctx, j.host, j.namespace)
	if err != nil {
		return err
	}
	var errs []error
	registered := false
	for i := range secrets {
		s := &secrets[i]
		m := api.MemberOfSecret(s)
		ep, err := endpointOfSecret(s)
		sameCluster := err == nil && ep.same(j.endpoint)
		switch {
		case m == j.name && tetherctlWrote(s, j.name):
			registered = true
			if !sameCluster {
				errs = append(errs, fmt.Errorf("member name %s is already used by another member cluster (server %s, Secret %s/%s): choose another name, or leave %s first",
					j.name, ep.Server, s.Namespace, s.Name, j.name))
			}
		case m == j.name && sameCluster:
			registered = true
			errs = append(errs, fmt.Errorf("member %s is already registered by Secret %s/%s, which tetherctl did not write: delete that Secret first", j.name, s.Namespace, s.Name))
		case m == j.name:
			registered = true
			errs = append(errs, fmt.Errorf("member name %s is already used by another member cluster (server %s, Secret %s/%s): choose another name", j.name, ep.Server, s.Namespace, s.Name))
		case s.Name == api.MemberSecretName(j.name):
			errs = append(errs, fmt.Errorf("secret %s/%s registers member %s: rename or delete it first", s.Namespace, s.Name, m))
		case sameCluster:
			errs = append(errs, fmt.Errorf("this cluster (%s) is already member %s (Secret %s/%s): leave it first", j.endpoint.Server, m, s.Namespace, s.Name))
		}
	}
	node := api.NodeName(j.nodePrefix, j.name)
	_, err = j.host.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil && !registered:
		errs = append(errs, fmt.Errorf("node %s exists but no member Secret registers %s (a --member flag of tether-node, or a node left over): remove it first", node, j.name))
	case err != nil && !apierrors.IsNotFound(err):
		errs = append(errs, fmt.Errorf("get node %s: %w", node, err))
	}
	return errors.Join(errs...)
}

// identityObject is one object of the member identity: how to read it, for the ownership checks and the report.
type identityObject struct {
	kind, name string
	get        func(ctx context.Context) (metav1.Object, error)
	delete     func(ctx context.Context, o metav1.DeleteOptions) error
}

// identity lists the member identity's objects, in the order they are created (and deleted in reverse).
func identity(c kubernetes.Interface) []identityObject {
	ns, n := api.MemberNamespace, api.MemberIdentity
	core, rbac := c.CoreV1(), c.RbacV1()
	return []identityObject{
		{"namespace", ns,
			func(ctx context.Context) (metav1.Object, error) {
				return core.Namespaces().Get(ctx, ns, metav1.GetOptions{})
			},
			func(ctx context.Context, o metav1.DeleteOptions) error { return core.Namespaces().Delete(ctx, ns, o) }},
		{"serviceaccount", n,
			func(ctx context.Context) (metav1.Object, error) {
				return core.ServiceAccounts(ns).Get(ctx, n, metav1.GetOptions{})
			},
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return core.ServiceAccounts(ns).Delete(ctx, n, o)
			}},
		{"secret", api.MemberTokenSecret,
			func(ctx context.Context) (metav1.Object, error) {
				return core.Secrets(ns).Get(ctx, api.MemberTokenSecret, metav1.GetOptions{})
			},
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return core.Secrets(ns).Delete(ctx, api.MemberTokenSecret, o)
			}},
		{"clusterrole", n,
			func(ctx context.Context) (metav1.Object, error) {
				return rbac.ClusterRoles().Get(ctx, n, metav1.GetOptions{})
			},
			func(ctx context.Context, o metav1.DeleteOptions) error { return rbac.ClusterRoles().Delete(ctx, n, o) }},
		{"clusterrolebinding", n,
			func(ctx context.Context) (metav1.Object, error) {
				return rbac.ClusterRoleBindings().Get(ctx, n, metav1.GetOptions{})
			},
			func(ctx context.Context, o metav1.DeleteOptions) error {
				return rbac.ClusterRoleBindings().Delete(ctx, n, o)
			}},
	}
}

// checkMember refuses objects of the identity's names that Tether does not own, or that another host joined.
func (j *joiner) checkMember(ctx context.Context) error {
	var errs []error
	for _, obj := range identity(j.member) {
		have, err := obj.get(ctx)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("member %s: get %s %s: %w", j.name, obj.kind, obj.name, err))
			continue
		}
		errs = append(errs, ownedError(have, obj, j.clusterID))
		if have.GetDeletionTimestamp() != nil {
			errs = append(errs, fmt.Errorf("member %s: %s %s is being deleted (a leave?): try again once it is gone", j.name, obj.kind, obj.name))
		}
	}
	return errors.Join(errs...)
}

// ownedError says why have is not the member identity of host cluster clusterID (nil when it is).
func ownedError(have metav1.Object, obj identityObject, clusterID string) error {
	switch l := have.GetLabels(); {
	case api.JoinedBy(have, clusterID):
		return nil
	case l[api.LabelManagedBy] == api.ManagedByTether && l[api.LabelJoinedBy] != "":
		return fmt.Errorf("%s %s was created by the join of another host cluster (%s): leave from that host first", obj.kind, obj.name, l[api.LabelJoinedBy])
	default:
		return fmt.Errorf("%s %s exists and is not Tether's: tetherctl does not take it over", obj.kind, obj.name)
	}
}

// identityApply are the apply configurations of the member identity, in identity's order.
func identityApply(clusterID string) (*corev1ac.NamespaceApplyConfiguration, *corev1ac.ServiceAccountApplyConfiguration,
	*corev1ac.SecretApplyConfiguration, *rbacv1ac.ClusterRoleApplyConfiguration, *rbacv1ac.ClusterRoleBindingApplyConfiguration) {
	labels := api.JoinLabels(clusterID)
	ns, n := api.MemberNamespace, api.MemberIdentity
	rules := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(api.MemberRules()))
	for _, r := range api.MemberRules() {
		rules = append(rules, rbacv1ac.PolicyRule().WithAPIGroups(r.APIGroups...).WithResources(r.Resources...).
			WithResourceNames(r.ResourceNames...).WithNonResourceURLs(r.NonResourceURLs...).WithVerbs(r.Verbs...))
	}
	return corev1ac.Namespace(ns).WithLabels(labels),
		corev1ac.ServiceAccount(n, ns).WithLabels(labels).WithAutomountServiceAccountToken(false),
		corev1ac.Secret(api.MemberTokenSecret, ns).WithLabels(labels).WithType(corev1.SecretTypeServiceAccountToken).
			WithAnnotations(map[string]string{corev1.ServiceAccountNameKey: n}),
		rbacv1ac.ClusterRole(n).WithLabels(labels).WithRules(rules...),
		rbacv1ac.ClusterRoleBinding(n).WithLabels(labels).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(n)).
			WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithNamespace(ns).WithName(n))
}

// applyIdentity creates or brings back in line the member identity, by server-side apply, and says what changed.
func (j *joiner) applyIdentity(ctx context.Context) error {
	nsAC, saAC, secretAC, roleAC, bindingAC := identityApply(j.clusterID)
	opts := metav1.ApplyOptions{FieldManager: api.JoinFieldManager, Force: true}
	core, rbac := j.member.CoreV1(), j.member.RbacV1()
	apply := []func() (metav1.Object, error){
		func() (metav1.Object, error) { return core.Namespaces().Apply(ctx, nsAC, opts) },
		func() (metav1.Object, error) { return core.ServiceAccounts(api.MemberNamespace).Apply(ctx, saAC, opts) },
		func() (metav1.Object, error) { return core.Secrets(api.MemberNamespace).Apply(ctx, secretAC, opts) },
		func() (metav1.Object, error) { return rbac.ClusterRoles().Apply(ctx, roleAC, opts) },
		func() (metav1.Object, error) { return rbac.ClusterRoleBindings().Apply(ctx, bindingAC, opts) },
	}
	for i, obj := range identity(j.member) {
		have, err := obj.get(ctx)
		if err != nil {
			have = nil
		}
		after, err := apply[i]()
		if err != nil {
			return fmt.Errorf("member %s: apply %s %s: %w", j.name, obj.kind, obj.name, err)
		}
		fmt.Fprintf(j.out, "member %s: %s/%s %s\n", j.name, obj.kind, obj.name, change(have, after))
	}
	return nil
}

// change is kubectl's word for what an apply did to before (nil: absent).
func change(before, after metav1.Object) string {
	switch {
	case before == nil:
		return "created"
	case before.GetResourceVersion() == after.GetResourceVersion():
		return "unchanged"
	default:
		return "configured"
	}
}

// waitToken waits until the member's token controller has filled the token Secret; it returns the token and the
// CA the Secret carries.
func (j *joiner) waitToken(ctx context.Context) (token string, ca []byte, err error) {
	secrets := j.member.CoreV1().Secrets(api.MemberNamespace)
	err = wait.PollUntilContextTimeout(ctx, j.poll, j.timeout, true, func(ctx context.Context) (bool, error) {
		s, err := secrets.Get(ctx, api.MemberTokenSecret, metav1.GetOptions{})
		if err != nil {
			// Retried until the timeout; the error below says what is missing.
			return false, nil
		}
		token, ca = string(s.Data[corev1.ServiceAccountTokenKey]), s.Data[corev1.ServiceAccountRootCAKey]
		return token != "", nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("member %s: Secret %s/%s has no token after %s (does the member's kube-controller-manager run its token controller, with --service-account-private-key-file?): %w",
			j.name, api.MemberNamespace, api.MemberTokenSecret, j.timeout, err)
	}
	return token, ca, nil
}

// verifyIdentity checks, as tether-node will, that the member kubeconfig works: it lists a node with it (RBAC may
// take a moment to see the new binding).
func verifyIdentity(ctx context.Context, raw []byte, timeout time.Duration) error {
	cfg, err := registry.ParseMemberKubeconfig(raw)
	if err != nil {
		return err
	}
	cfg.UserAgent = "tetherctl"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, last = c.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the new identity cannot list the member's nodes: %w", errors.Join(last, err))
	}
	return nil
}

// writeMemberSecret applies the member Secret in the host (creating Tether's namespace there if needed).
func (j *joiner) writeMemberSecret(ctx context.Context, kubeconfig []byte) error {
	core := j.host.CoreV1()
	_, err := core.Namespaces().Get(ctx, j.namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: j.namespace, Labels: api.ManagedLabels()}}, metav1.CreateOptions{})
		if err == nil {
			fmt.Fprintf(j.out, "host: namespace/%s created\n", j.namespace)
		}
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("host namespace %s: %w", j.namespace, err)
	}
	name := api.MemberSecretName(j.name)
	labels := api.ManagedLabels()
	labels[api.LabelMember] = j.name
	ac := corev1ac.Secret(name, j.namespace).WithLabels(labels).WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{api.MemberSecretKubeconfig: kubeconfig})
	if j.kubeletPort != 0 {
		// Applied with the rest: joining again without --kubelet-port removes it.
		ac.WithAnnotations(map[string]string{api.AnnotationKubeletPort: strconv.Itoa(j.kubeletPort)})
	}
	var before metav1.Object
	if have, err := core.Secrets(j.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		before = have
	}
	after, err := core.Secrets(j.namespace).Apply(ctx, ac, metav1.ApplyOptions{FieldManager: api.JoinFieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("host: apply Secret %s/%s: %w", j.namespace, name, err)
	}
	fmt.Fprintf(j.out, "host: secret/%s %s\n", name, change(before, after))
	return nil
}

// waitNodeReady waits until the virtual node exists and is Ready.
func waitNodeReady(ctx context.Context, host kubernetes.Interface, node string, poll, timeout time.Duration) error {
	last := fmt.Errorf("node %s not registered yet", node)
	err := wait.PollUntilContextTimeout(ctx, poll, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := host.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			last = fmt.Errorf("node %s not registered yet", node)
			return false, nil
		}
		if err != nil {
			last = err
			return false, nil
		}
		c := readyCondition(n)
		if c != nil && c.Status == corev1.ConditionTrue {
			return true, nil
		}
		last = fmt.Errorf("node %s not Ready yet", node)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%w (is tether-node running with --member-secrets?): %w", last, err)
	}
	return nil
}

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}
