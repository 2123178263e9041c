package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tetherkube/tether/api"
	"github.com/tetherkube/tether/provider/registry"
)

const testClusterID = "host-uid-1"

var (
	epM1 = endpoint{Server: "https://m1.example:6443", CA: []byte("CA-M1\n")}
	epM2 = endpoint{Server: "https://m2.example:6443", CA: []byte("CA-M2\n")}
)

// memberWithTokenController is a fake member whose "token controller" fills tether-node's token Secret on read.
func memberWithTokenController(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		get := a.(k8stesting.GetAction)
		if get.GetNamespace() != api.MemberNamespace || get.GetName() != api.MemberTokenSecret {
			return false, nil, nil
		}
		obj, err := c.Tracker().Get(a.GetResource(), get.GetNamespace(), get.GetName())
		if err != nil {
			return false, nil, nil
		}
		s := obj.(*corev1.Secret).DeepCopy()
		if len(s.Data[corev1.ServiceAccountTokenKey]) == 0 {
			s.Data = map[string][]byte{corev1.ServiceAccountTokenKey: []byte("tok"), corev1.ServiceAccountRootCAKey: []byte("CA-FROM-SECRET")}
			if err := c.Tracker().Update(a.GetResource(), s, s.Namespace); err != nil {
				return true, nil, err
			}
		}
		return false, nil, nil
	})
	return c
}

func hostCluster(objs ...runtime.Object) *fake.Clientset {
	return fake.NewClientset(append([]runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: api.DefaultNamespace}},
	}, objs...)...)
}

// memberSecret is a host member Secret for member, pointing at ep.
func memberSecret(t *testing.T, name, member string, ep endpoint, tetherctl bool) *corev1.Secret {
	t.Helper()
	raw, err := memberKubeconfig(member, ep, "some-token")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{api.LabelMember: member}
	if tetherctl {
		labels[api.LabelManagedBy] = api.ManagedByTether
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: api.DefaultNamespace, Labels: labels, UID: "secret-uid"},
		Data: map[string][]byte{api.MemberSecretKubeconfig: raw}}
}

func virtualNode(member string) *corev1.Node {
	name := api.NodeName(api.DefaultNodePrefix, member)
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: api.NodeLabels(member, name)}}
}

func TestMemberOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		o    memberOptions
		want []string // substrings of the error; none: valid
	}{
		{"kubeconfig", memberOptions{kubeconfig: "m.yaml"}, nil},
		{"kubeconfig and context", memberOptions{kubeconfig: "m.yaml", context: "admin"}, nil},
		{"address", memberOptions{apiServer: "https://m:6443", token: "t", caFile: "ca.crt"}, nil},
		{"nothing", memberOptions{}, []string{"say how to reach the member"}},
		{"both ways", memberOptions{kubeconfig: "m.yaml", token: "t"}, []string{"not both"}},
		{"address without token and CA", memberOptions{apiServer: "https://m:6443"}, []string{"--token is required", "--ca-file is required"}},
		{"token alone", memberOptions{token: "t"}, []string{"--api-server is required", "--ca-file is required"}},
		{"context without kubeconfig", memberOptions{apiServer: "https://m:6443", token: "t", caFile: "ca", context: "x"}, []string{"--member-context needs --member-kubeconfig"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.o.validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestMemberOptionsConfig(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("CA-DATA"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://k:6443", CertificateAuthority: ca}
	kc.Clusters["insecure"] = &clientcmdapi.Cluster{Server: "https://i:6443", InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "admin"}
	kc.Contexts["insecure"] = &clientcmdapi.Context{Cluster: "insecure", AuthInfo: "admin"}
	kc.CurrentContext = "c"
	path := filepath.Join(dir, "member.yaml")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}

	_, ep, err := (&memberOptions{kubeconfig: path}).config()
	if err != nil {
		t.Fatal(err)
	}
	if ep.Server != "https://k:6443" || string(ep.CA) != "CA-DATA" {
		t.Errorf("endpoint from kubeconfig %+v: want its server and the CA file's content", ep)
	}
	if _, _, err := (&memberOptions{kubeconfig: path, context: "insecure"}).config(); err == nil || !strings.Contains(err.Error(), "skips TLS verification") {
		t.Errorf("insecure context: %v, want a refusal", err)
	}
	if _, _, err := (&memberOptions{kubeconfig: path, context: "nope"}).config(); err == nil {
		t.Error("unknown context: no error")
	}
	cfg, ep, err := (&memberOptions{apiServer: "https://a:6443", token: "tk", caFile: ca}).config()
	if err != nil {
		t.Fatal(err)
	}
	if ep.Server != "https://a:6443" || string(ep.CA) != "CA-DATA" || cfg.BearerToken != "tk" {
		t.Errorf("endpoint from address %+v, token %q", ep, cfg.BearerToken)
	}
	if _, _, err := (&memberOptions{apiServer: "https://a:6443", token: "tk", caFile: filepath.Join(dir, "missing")}).config(); err == nil {
		t.Error("missing CA file: no error")
	}
}

// The member Secret's kubeconfig is what tether-node accepts, and names the endpoint it was made from.
func TestMemberKubeconfig(t *testing.T) {
	raw, err := memberKubeconfig("m1", epM1, "tok")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := registry.ParseMemberKubeconfig(raw)
	if err != nil {
		t.Fatalf("tether-node refuses it: %v", err)
	}
	if cfg.Host != epM1.Server || cfg.BearerToken != "tok" || !bytes.Equal(cfg.CAData, epM1.CA) {
		t.Errorf("rest config %s %q %q", cfg.Host, cfg.BearerToken, cfg.CAData)
	}
	got, err := endpointOfSecret(&corev1.Secret{Data: map[string][]byte{api.MemberSecretKubeconfig: raw}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.same(epM1) || got.same(epM2) {
		t.Errorf("endpoint %+v", got)
	}
	if _, err := endpointOfSecret(&corev1.Secret{Data: map[string][]byte{api.MemberSecretKubeconfig: []byte("{")}}); err == nil {
		t.Error("a broken kubeconfig: no error")
	}
}

func TestCommandArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"join"}, "exactly one member NAME"},
		{[]string{"join", "a", "b", "--member-kubeconfig", "x"}, "exactly one member NAME"},
		{[]string{"join", "m1"}, "say how to reach the member"},
		{[]string{"join", "Bad_Name", "--member-kubeconfig", "x"}, `member name "Bad_Name"`},
		{[]string{"join", "m1", "--member-kubeconfig", "x", "--timeout", "0s"}, "--timeout 0s: must be positive"},
		{[]string{"leave", "m1", "--api-server", "https://x"}, "--token is required"},
		{[]string{"status", "extra"}, "unknown command"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			cmd := NewCommand()
			cmd.SetArgs(c.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetArgs([]string{"completion", "bash"})
	cmd.SetOut(&out)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "__start_tetherctl") {
		t.Errorf("no bash completion script:\n%.300s", out.String())
	}
	// The member context of --member-kubeconfig completes from that file.
	dir := t.TempDir()
	kc := clientcmdapi.NewConfig()
	kc.Contexts["east-admin"] = &clientcmdapi.Context{Cluster: "c"}
	kc.Contexts["west-admin"] = &clientcmdapi.Context{Cluster: "c"}
	path := filepath.Join(dir, "m.yaml")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	cmd = NewCommand()
	out.Reset()
	cmd.SetArgs([]string{"__complete", "join", "m1", "--member-kubeconfig", path, "--member-context", ""})
	cmd.SetOut(&out)
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "east-admin\nwest-admin\n") {
		t.Errorf("member context completion:\n%s", out.String())
	}
}

// a context for tests that poll: short, and bound to the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
