// Package chart_test renders charts/tether with the real helm (built from hack/tools/helm) and checks what it
// renders against the harness host and the real binaries: every object passes `kubectl apply --dry-run=server`, the
// roles name their verbs and resources, and the Deployments pass arguments (and a descheduler policy) that the
// binaries accept, with the images `make images` names.
package chart_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/descheduler/pkg/descheduler"
	"sigs.k8s.io/descheduler/pkg/framework/pluginregistry"

	deschedulerapp "github.com/tetherkube/tether/cmd/tether-descheduler/app"
	nodeapp "github.com/tetherkube/tether/cmd/tether-node/app"
	webhookapp "github.com/tetherkube/tether/cmd/tether-webhook/app"
	"github.com/tetherkube/tether/descheduler/plugins/memberunschedulable"
	"github.com/tetherkube/tether/internal/sandbox"
	"github.com/tetherkube/tether/test/e2e/framework"
)

var env *framework.Env

func TestMain(m *testing.M) { os.Exit(framework.Run(m, &env)) }

// everything turns every part of the chart on.
var everything = []string{
	"descheduler.enabled=true", "scheduler.enabled=true", "node.replicas=2", "descheduler.replicas=2",
	"node.kubelet.rotateServerCertificates=true", "node.members[0].name=m1", "node.members[0].secretName=m1-kubeconfig",
	"node.members[0].kubeletPort=10251", "keepLabelKeys={example.com/region}",
}

// TestServerDryRun applies the chart's objects with the defaults and with every part on to the harness host with
// `kubectl apply --dry-run=server`: the host's validation, defaulting and admission (RBAC escalation checks
// included) accept each of them.
func TestServerDryRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
	}{{"defaults", nil}, {"everything", everything}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Host.Namespace(t, nil)
			manifest := render(t, ns, tc.set...)
			objs := decode(t, manifest)
			out := env.Host.MustKubectl(t, bytes.NewReader(manifest), "apply", "--dry-run=server", "-f", "-")
			var applied int
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasSuffix(line, "(server dry run)") {
					applied++
				}
			}
			if applied != len(objs) || applied == 0 {
				t.Errorf("%d objects rendered, %d applied:\n%s", len(objs), applied, out)
			}
			for _, o := range objs {
				kind := strings.ToLower(o.GetKind())
				if !strings.Contains(out, kind+"/"+o.GetName()+" ") && !strings.Contains(out, kind+"."+o.GroupVersionKind().Group+"/"+o.GetName()+" ") {
					t.Errorf("%s %s missing from kubectl's output:\n%s", o.GetKind(), o.GetName(), out)
				}
			}
		})
	}
}

// TestRolesNameTheirRights reads every Role and ClusterRole the chart renders with every part on: no wildcard, no
// escalate/bind/impersonate, Secrets written only in a namespace, and no binding to an aggregate admin role.
func TestRolesNameTheirRights(t *testing.T) {
	objs := decode(t, render(t, "tether-system", everything...))
	var roles int
	for _, o := range objs {
		switch o.GetKind() {
		case "Role", "ClusterRole":
			roles++
			var r rbacv1.ClusterRole // Role has the same rules
			convert(t, o, &r)
			if len(r.Rules) == 0 {
				t.Errorf("%s %s/%s has no rules", o.GetKind(), o.GetNamespace(), o.GetName())
			}
			for _, rule := range r.Rules {
				for _, list := range [][]string{rule.Verbs, rule.Resources, rule.APIGroups, rule.NonResourceURLs, rule.ResourceNames} {
					if slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, "*") }) {
						t.Errorf("%s %s: wildcard in %+v", o.GetKind(), o.GetName(), rule)
					}
				}
				for _, v := range []string{"escalate", "bind", "impersonate"} {
					if slices.Contains(rule.Verbs, v) {
						t.Errorf("%s %s: verb %s in %+v", o.GetKind(), o.GetName(), v, rule)
					}
				}
				writes := slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" })
				if o.GetKind() == "ClusterRole" && slices.Contains(rule.Resources, "secrets") && writes {
					t.Errorf("ClusterRole %s writes Secrets cluster-wide: %+v", o.GetName(), rule)
				}
			}
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			convert(t, o, &b)
			if slices.Contains([]string{"cluster-admin", "admin", "edit"}, b.RoleRef.Name) {
				t.Errorf("%s %s binds %s", o.GetKind(), o.GetName(), b.RoleRef.Name)
			}
		}
	}
	if roles < 8 {
		t.Errorf("only %d roles rendered with every part on", roles)
	}
}

// TestBinariesAcceptTheirArgs parses each Deployment's arguments with the real flag sets of tether-node,
// tether-webhook and tether-descheduler (and validates them where the binary has a validation), decodes the
// descheduler policy of the ConfigMap strictly, and checks that the images are the ones `make images` names.
func TestBinariesAcceptTheirArgs(t *testing.T) {
	version := appVersion(t)
	objs := decode(t, render(t, "tether-system", everything...))
	seen := map[string]bool{}
	for _, o := range objs {
		switch {
		case o.GetKind() == "Deployment":
			var d appsv1.Deployment
			convert(t, o, &d)
			for _, c := range d.Spec.Template.Spec.Containers {
				seen[c.Name] = true
				if want := "ghcr.io/tetherkube/" + c.Name + ":" + version; c.Image != want {
					t.Errorf("%s: image %s, want %s", c.Name, c.Image, want)
				}
				args := make([]string, len(c.Args))
				for i, a := range c.Args {
					args[i] = strings.ReplaceAll(a, "$(POD_IP)", "10.1.2.3") // the kubelet expands it
				}
				if err := acceptArgs(c.Name, args); err != nil {
					t.Errorf("%s %v: %v", c.Name, args, err)
				}
			}
		case o.GetKind() == "ConfigMap" && o.GetName() == "tether-descheduler":
			var cm corev1.ConfigMap
			convert(t, o, &cm)
			decodePolicy(t, cm.Data["policy.yaml"])
		}
	}
	for _, c := range []string{"tether-node", "tether-webhook", "tether-descheduler", "tether-scheduler"} {
		if !seen[c] {
			t.Errorf("no Deployment runs %s", c)
		}
	}
}

// acceptArgs parses args as binary would; tether-scheduler (its own module) is checked by the chart's unit tests.
func acceptArgs(binary string, args []string) error {
	switch binary {
	case "tether-node":
		o := nodeapp.NewOptions()
		fs := pflag.NewFlagSet(binary, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			return err
		}
		_, err := o.Validate()
		return err
	case "tether-webhook":
		o := webhookapp.NewOptions()
		cmd := &cobra.Command{}
		o.AddFlags(cmd)
		cmd.Flags().SetOutput(io.Discard)
		if err := cmd.Flags().Parse(args); err != nil {
			return err
		}
		_, _, err := o.Validate()
		return err
	case "tether-descheduler":
		cmd := deschedulerapp.NewCommand(io.Discard)
		cmd.Flags().SetOutput(io.Discard)
		return cmd.ParseFlags(args)
	case "tether-scheduler":
		if !slices.Contains(args, "--config=/etc/tether/scheduler/config.yaml") {
			return errors.New("no --config")
		}
		return nil
	}
	return fmt.Errorf("unknown binary %s", binary)
}

// decodePolicy loads a descheduler policy as tether-descheduler does, strictly, with Tether's plugin registered.
func decodePolicy(t *testing.T, policy string) {
	t.Helper()
	registry := pluginregistry.NewRegistry()
	descheduler.RegisterDefaultPlugins(registry)
	deschedulerapp.RegisterPlugins(registry)
	pluginregistry.PluginRegistry = registry // the policy's conversion reads the global registry
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := descheduler.LoadPolicyConfig(path, fake.NewClientset(), registry)
	if err != nil {
		t.Fatalf("descheduler policy: %v\n%s", err, policy)
	}
	for _, c := range p.Profiles[0].PluginConfigs {
		if args, ok := c.Args.(*memberunschedulable.MemberUnschedulableArgs); ok {
			if args.AvoidNamespace != "tether-system" || args.AvoidConfigMap != "tether-avoid" {
				t.Errorf("avoid record %s/%s, want tether-system/tether-avoid (the webhook's)", args.AvoidNamespace, args.AvoidConfigMap)
			}
			return
		}
	}
	t.Errorf("no %s in the policy:\n%s", memberunschedulable.PluginName, policy)
}

// render runs `helm template tether charts/tether --namespace ns --set …` with the helm of hack/tools/helm.sh.
func render(t *testing.T, namespace string, set ...string) []byte {
	t.Helper()
	root := repoRoot(t)
	args := []string{"template", "tether", filepath.Join(root, "charts", "tether"), "--namespace", namespace}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := run(t.Context(), root, filepath.Join(helmTools(t), "helm"), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmTools is the folder of helm and its plugins, built from their pins by hack/tools/helm.sh on first use.
func helmTools(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	out, err := run(t.Context(), root, filepath.Join(root, "hack", "tools", "helm.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := sandbox.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// appVersion is charts/tether's appVersion, the default tag of every image.
func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "charts", "tether", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("charts/tether/Chart.yaml has no appVersion")
	}
	return string(m[1])
}

// decode splits a rendered manifest into its objects.
func decode(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered manifest: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	if len(objs) == 0 {
		t.Fatal("the chart rendered nothing")
	}
	return objs
}

func convert(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}
