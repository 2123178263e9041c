// Package kubelet serves the kubelet API of every virtual node: kubectl logs, exec, attach and port-forward against
// the host reach tether-node, which finds the pod's member and relays the call to the member apiserver's pod
// subresources.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream" //nolint:staticcheck // client-go 0.37 port-forward dialers still return this package's Connection
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	streamhttp "k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"
)

// Member is one virtual node and where its pods run: the member's clients.
type Member struct {
	Name     string
	NodeName string
	Client   kubernetes.Interface
	Config   *rest.Config
	// Metrics reads the member's metrics.k8s.io; PodSelector selects this node's pods in the member, and OwnedPods
	// lists them from the cache (container start times, host UIDs).
	Metrics     metricsclient.Interface
	PodSelector string
	OwnedPods   func() ([]*corev1.Pod, error)
	// HasCopyOf reports whether the member pod of the host pod's name is Tether's copy of that very pod (owned,
	// with its UID): nothing is relayed to any other member pod.
	HasCopyOf func(host *corev1.Pod) bool
}

// Router finds the member of a host pod (by the virtual node it is bound to), and the virtual nodes published on
// a kubelet port.
type Router interface {
	MemberOf(namespace, pod string) (*Member, error)
	// MembersOn are the virtual nodes whose kubelet endpoint is the given port: node-level requests
	// (/stats/summary, /metrics/resource) carry no node name, so the port they arrive on says which node is asked.
	MembersOn(port int32) []*Member
}

// Relay implements the kubelet API's handlers by relaying to members.
type Relay struct {
	Router Router
	// Pods lists the host pods bound to the virtual nodes (the kubelet API's /pods).
	Pods     func(context.Context) ([]*corev1.Pod, error)
	counters counters
}

// Handlers are the virtual-kubelet pod handlers backed by r.
func (r *Relay) Handlers() api.PodHandlerConfig {
	return api.PodHandlerConfig{
		GetContainerLogs:      r.Logs,
		RunInContainer:        r.Exec,
		AttachToContainer:     r.Attach,
		PortForward:           r.PortForward,
		GetPodsFromKubernetes: r.podsOnPort,
		GetStatsSummary:       r.StatsSummary,
		GetMetricsResource:    r.MetricsResource,
	}
}

// StatsSummary is /stats/summary for the virtual node(s) on the port the request came in on.
func (r *Relay) StatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	usages, err := r.usagesFor(ctx)
	if err != nil {
		return nil, err
	}
	return Summary(usages), nil
}

// MetricsResource is /metrics/resource for the virtual node(s) on the port the request came in on.
func (r *Relay) MetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	usages, err := r.usagesFor(ctx)
	if err != nil {
		return nil, err
	}
	return ResourceMetrics(usages), nil
}

// membersOnPort are the virtual nodes published on the port a request came in on.
func (r *Relay) membersOnPort(ctx context.Context) ([]*Member, error) {
	addr, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return nil, errors.New("no local address on the request")
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("local address %s is not TCP", addr)
	}
	members := r.Router.MembersOn(int32(tcp.Port))
	if len(members) == 0 {
		return nil, errdefs.NotFoundf("no virtual node is served on port %d", tcp.Port)
	}
	return members, nil
}

// podsOnPort is /pods: the host pods bound to the virtual node(s) on the request's port, the node(s) the request
// was authorized for.
func (r *Relay) podsOnPort(ctx context.Context) ([]*corev1.Pod, error) {
	members, err := r.membersOnPort(ctx)
	if err != nil {
		return nil, err
	}
	all, err := r.Pods(ctx)
	if err != nil {
		return nil, err
	}
	nodes := map[string]bool{}
	for _, m := range members {
		nodes[m.NodeName] = true
	}
	var out []*corev1.Pod
	for _, p := range all {
		if nodes[p.Spec.NodeName] {
			out = append(out, p)
		}
	}
	return out, nil
}

func (r *Relay) usagesFor(ctx context.Context) ([]NodeUsage, error) {
	members, err := r.membersOnPort(ctx)
	if err != nil {
		return nil, err
	}
	usages := make([]NodeUsage, 0, len(members))
	for _, m := range members {
		u, err := r.Usage(ctx, m)
		if err != nil {
			return nil, err
		}
		usages = append(usages, u)
	}
	return usages, nil
}

// Logs streams a container's log from the member with every option kubectl sends.
func (r *Relay) Logs(ctx context.Context, namespace, pod, container string, o api.ContainerLogOpts) (io.ReadCloser, error) {
	m, err := r.Router.MemberOf(namespace, pod)
	if err != nil {
		return nil, err
	}
	return m.Client.CoreV1().Pods(namespace).GetLogs(pod, LogOptions(container, o)).Stream(ctx)
}

// LogOptions translates the kubelet API's log options into the pods/log subresource's.
func LogOptions(container string, o api.ContainerLogOpts) *corev1.PodLogOptions {
	opts := &corev1.PodLogOptions{
		Container:  container,
		Follow:     o.Follow,
		Previous:   o.Previous,
		Timestamps: o.Timestamps,
	}
	if o.Tail > 0 {
		opts.TailLines = ptr.To(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		opts.LimitBytes = ptr.To(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		opts.SinceSeconds = ptr.To(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		opts.SinceTime = ptr.To(metaTime(o.SinceTime))
	}
	return opts
}

// Exec runs a command in a member container, streaming stdin, stdout, stderr and terminal resizes. A non-zero exit
// comes back as client-go's CodeExitError, which the kubelet API turns into the status kubectl reads the code from.
func (r *Relay) Exec(ctx context.Context, namespace, pod, container string, cmd []string, attach api.AttachIO) error {
	opts := &corev1.PodExecOptions{Container: container, Command: cmd, Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil,
		Stderr: attach.Stderr() != nil, TTY: attach.TTY()}
	return r.stream(ctx, namespace, pod, "exec", opts, attach)
}

// Attach attaches to a member container.
func (r *Relay) Attach(ctx context.Context, namespace, pod, container string, attach api.AttachIO) error {
	opts := &corev1.PodAttachOptions{Container: container, Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil,
		Stderr: attach.Stderr() != nil, TTY: attach.TTY()}
	return r.stream(ctx, namespace, pod, "attach", opts, attach)
}

func (r *Relay) stream(ctx context.Context, namespace, pod, subresource string, opts runtime.Object, attach api.AttachIO) error {
	m, err := r.Router.MemberOf(namespace, pod)
	if err != nil {
		return err
	}
	u := m.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource(subresource).
		VersionedParams(opts, scheme.ParameterCodec).URL()
	// WebSocket first, SPDY when the member does not speak it, as kubectl does. client-go's executors report
	// upgrade failures with k8s.io/streaming's error types, not apimachinery's.
	spdyExec, err := remotecommand.NewSPDYExecutor(m.Config, http.MethodPost, u)
	if err != nil {
		return err
	}
	wsExec, err := remotecommand.NewWebSocketExecutor(m.Config, http.MethodGet, u.String())
	if err != nil {
		return err
	}
	exec, err := remotecommand.NewFallbackExecutor(wsExec, spdyExec, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	so := remotecommand.StreamOptions{Tty: attach.TTY()}
	if in := attach.Stdin(); in != nil {
		so.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		so.Stdout = out
	}
	if e := attach.Stderr(); e != nil && !attach.TTY() {
		so.Stderr = e
	}
	if attach.TTY() {
		so.TerminalSizeQueue = sizeQueue{attach.Resize()}
	}
	return exec.StreamWithContext(ctx, so)
}

// sizeQueue hands terminal resizes from the kubelet API to the member stream.
type sizeQueue struct{ ch <-chan api.TermSize }

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q.ch
	if !ok {
		return nil
	}
	return &remotecommand.TerminalSize{Width: s.Width, Height: s.Height}
}

// PortForward forwards one connection to a member pod's port.
func (r *Relay) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	m, err := r.Router.MemberOf(namespace, pod)
	if err != nil {
		return err
	}
	defer stream.Close()
	u := m.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(m.Config)
	if err != nil {
		return err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return fmt.Errorf("port-forward to %s/%s in member %s: %w", namespace, pod, m.Name, err)
	}
	defer conn.Close()
	return forwardOne(ctx, conn, port, stream)
}

// forwardOne runs one forwarded connection over an established port-forward connection, as kubectl does: an error
// stream and a data stream with the port and a request id.
func forwardOne(ctx context.Context, conn httpstream.Connection, port int32, stream io.ReadWriteCloser) error {
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, fmt.Sprint(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("create error stream: %w", err)
	}
	errorStream.Close() // we only read from it
	errs := make(chan error, 3)
	go func() {
		msg, err := io.ReadAll(errorStream)
		switch {
		case err != nil:
			errs <- fmt.Errorf("read error stream: %w", err)
		case len(msg) > 0:
			errs <- fmt.Errorf("port-forward: %s", msg)
		}
	}()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	dataStream, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("create data stream: %w", err)
	}
	defer conn.RemoveStreams(errorStream, dataStream)
	go func() {
		_, err := io.Copy(stream, dataStream)
		errs <- err
	}()
	go func() {
		_, err := io.Copy(dataStream, stream)
		dataStream.Close() // tell the member we are done writing
		if err != nil {
			errs <- err
		}
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errs:
		return err
	}
}

// NotFound is the error for a pod no virtual node knows.
func NotFound(namespace, pod string) error {
	return errdefs.NotFoundf("pod %s/%s is not on a virtual node of this tether-node", namespace, pod)
}

// NoCopy is the error for a host pod whose member has no pod that is Tether's copy of it (none, or one Tether does
// not own, or the copy of an older pod of the same name).
func NoCopy(namespace, pod, member string) error {
	return errdefs.NotFoundf("pod %s/%s: member %s has no copy of this pod that Tether owns", namespace, pod, member)
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t) }
