package harness

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TetherNode is the name of tether-node's process in the state.
const TetherNode = "tether-node"

// TetherNodeArgs are the arguments the sandbox and the e2e suites give tether-node: the host, every member by flag,
// the kubelet API on 127.0.0.1:kubeletPort, and extra.
func (s *State) TetherNodeArgs(bin string, kubeletPort int, extra ...string) []string {
	args := []string{bin, "--kubeconfig", s.Host().Kubeconfig, "--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(kubeletPort)}
	for _, m := range s.Members() {
		args = append(args, "--member", m.Name+"="+m.Kubeconfig)
	}
	return append(args, extra...)
}

// WaitVirtualNodes waits until every member's virtual node (tether-<member>) is Ready in the host.
func (s *State) WaitVirtualNodes(ctx context.Context, timeout time.Duration) error {
	cs, err := clientFor(s.Host().Kubeconfig)
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = nil
		for _, m := range s.Members() {
			n, err := cs.CoreV1().Nodes().Get(ctx, "tether-"+m.Name, metav1.GetOptions{})
			if err != nil {
				last = err
				return false, nil
			}
			if !nodeReady(n) {
				last = fmt.Errorf("node %s: %s", n.Name, readyMessage(n))
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return errors.Join(err, last)
	}
	return nil
}

func readyMessage(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return "no Ready condition"
}
