// Package harness_test proves the local control planes: members run workloads on kwok nodes, kwok serves logs and
// exec through the member apiservers to the real kubectl, and the host has no nodes of its own.
package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

func TestHostHasNoNodes(t *testing.T) {
	nodes, err := env.Host.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: "type=kwok"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 0 {
		t.Fatalf("host has %d kwok nodes; it must have none (its nodes are Tether's)", len(nodes.Items))
	}
}

func TestMembers(t *testing.T) {
	if len(env.Members) < 2 {
		t.Fatalf("want at least 2 members, have %d", len(env.Members))
	}
	for _, m := range env.Members {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			testMember(t, m)
		})
	}
}

func testMember(t *testing.T, m *framework.Cluster) {
	ns := m.Namespace(t, nil)
	const replicas = 2
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "demo"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "demo"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "app", Image: "registry.example/demo:1"},
					{Name: "sidecar", Image: "registry.example/sidecar:1"},
				}},
			},
		},
	}
	if _, err := m.Client.AppsV1().Deployments(ns).Create(t.Context(), deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var pods []corev1.Pod
	framework.Eventually(t, 2*time.Minute, "deployment available with pods Running on kwok nodes", func(ctx context.Context) error {
		d, err := m.Client.AppsV1().Deployments(ns).Get(ctx, "demo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != replicas {
			return fmt.Errorf("%d of %d replicas available", d.Status.AvailableReplicas, replicas)
		}
		list, err := m.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=demo"})
		if err != nil {
			return err
		}
		pods = list.Items
		if len(pods) != replicas {
			return fmt.Errorf("%d pods, want %d", len(pods), replicas)
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
			}
			node, err := m.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if node.Labels["type"] != "kwok" {
				return fmt.Errorf("pod %s runs on %s, not a kwok node", p.Name, node.Name)
			}
		}
		return nil
	})
	pod := pods[0].Name

	t.Run("logs", func(t *testing.T) {
		got := m.MustKubectl(t, nil, "logs", "-n", ns, pod, "-c", "app")
		if want := strings.Join(sandbox.LogLines, "\n") + "\n"; got != want {
			t.Errorf("kubectl logs printed %q, want %q", got, want)
		}
		got = m.MustKubectl(t, nil, "logs", "-n", ns, "deploy/demo", "-c", "sidecar", "--tail", "1")
		if want := sandbox.LogLines[len(sandbox.LogLines)-1] + "\n"; got != want {
			t.Errorf("kubectl logs --tail 1 printed %q, want %q", got, want)
		}
	})

	t.Run("exec", func(t *testing.T) {
		want := "hello from " + m.Name
		got := m.MustKubectl(t, nil, "exec", "-n", ns, pod, "-c", "app", "--", "echo", want)
		if got != want+"\n" {
			t.Errorf("kubectl exec printed %q, want %q", got, want+"\n")
		}
		got = m.MustKubectl(t, strings.NewReader("piped stdin\n"), "exec", "-i", "-n", ns, pod, "--", "head", "-n", "1") // kwok does not pass on the end of stdin: read one line
		if got != "piped stdin\n" {
			t.Errorf("kubectl exec -i printed %q, want %q", got, "piped stdin\n")
		}
		res, err := m.Kubectl(t.Context(), nil, "exec", "-n", ns, pod, "--", "sh", "-c", "exit 3")
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 {
			t.Errorf("kubectl exec of a failing command exited 0")
		}
	})
}
