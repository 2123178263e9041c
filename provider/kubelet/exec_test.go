package kubelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	streaming "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// exitingContainer prints a line and exits with code 3, as a real container runtime reports it.
type exitingContainer struct{}

func (exitingContainer) ExecInContainer(_ context.Context, _, _, _ string, cmd []string, _ io.Reader, out, _ io.WriteCloser,
	_ bool, _ <-chan streaming.TerminalSize, _ time.Duration) error {
	fmt.Fprintf(out, "ran %s\n", strings.Join(cmd, " "))
	return utilexec.CodeExitError{Err: errors.New("command terminated with exit code 3"), Code: 3}
}

type oneMember struct{ m *Member }

func (o oneMember) MemberOf(string, string) (*Member, error) { return o.m, nil }
func (o oneMember) MembersOn(int32) []*Member                { return []*Member{o.m} }

// A command's exit code travels back like a kubelet's: the member's exec stream reports it, the relay returns it
// unwrapped, and the virtual node's kubelet API reports it to the caller (kubectl exits with it). kwok, which the
// e2e suites run, reports failures without a code, so this is checked here against the kubelet's own streaming
// server as the member side.
func TestExecExitCodeComesBack(t *testing.T) {
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/namespaces/shop/pods/web-1/exec") {
			http.NotFound(w, r)
			return
		}
		// The member apiserver hands pods/exec (stdin, stdout, stderr, tty) to the node's kubelet (input,
		// output, error, tty): this fake is both.
		q := r.URL.Query()
		for from, to := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error"} {
			if v := q.Get(from); v != "" {
				q.Set(to, map[string]string{"true": "1"}[v])
			}
		}
		r.URL.RawQuery = q.Encode()
		opts, err := streaming.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		streaming.ServeExec(w, r, exitingContainer{}, "web-1", "", r.URL.Query().Get("container"), r.URL.Query()["command"], opts,
			time.Minute, time.Minute, remotecommandconsts.SupportedStreamingProtocols)
	}))
	defer member.Close()
	cfg := &rest.Config{Host: member.URL}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	relay := &Relay{Router: oneMember{&Member{Name: "m1", NodeName: "tether-m1", Client: client, Config: cfg}}}
	virtualNode := httptest.NewServer(api.PodHandler(relay.Handlers(), false))
	defer virtualNode.Close()

	// What the host apiserver does for `kubectl exec`: open a stream to the node's kubelet API.
	u, _ := url.Parse(virtualNode.URL + "/exec/shop/web-1/app")
	u.RawQuery = url.Values{"command": {"false", "now"}, "output": {"1"}, "error": {"1"}}.Encode()
	exec, err := remotecommand.NewSPDYExecutor(&rest.Config{Host: virtualNode.URL}, http.MethodPost, u)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = exec.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	var exit utilexec.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
		t.Errorf("exec error %v (%T), want exit code 3", err, err)
	}
	if stdout.String() != "ran false now\n" {
		t.Errorf("stdout %q", stdout.String())
	}
}
