package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tetherkube/tether/api"
)

func TestEnsureConfiguration(t *testing.T) {
	ctx := t.Context()
	sel, err := metav1.ParseToLabelSelector(api.DefaultOffloadSelector)
	if err != nil {
		t.Fatal(err)
	}
	o := ConfigurationOptions{Name: "tether-webhook", URL: "https://127.0.0.1:9443/mutate", NamespaceSelector: sel,
		SkipNamespaces: []string{"kube-system"}, FailurePolicy: "Ignore", TimeoutSeconds: 5}
	// A configuration as an older tether-webhook labelled it.
	old := Configuration(o, []byte("ca"))
	old.Labels = map[string]string{api.LabelManagedBy: "tether-webhook"}
	client := fake.NewClientset(old)
	configs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()

	if err := EnsureConfiguration(ctx, client, o, []byte("ca")); err != nil {
		t.Fatal(err)
	}
	got, err := configs.Get(ctx, o.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[api.LabelManagedBy] != api.ManagedByTether {
		t.Errorf("labels %v, want %s=%s", got.Labels, api.LabelManagedBy, api.ManagedByTether)
	}
	// In step: no write.
	client.ClearActions()
	if err := EnsureConfiguration(ctx, client, o, []byte("ca")); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("unexpected %s while in step", a.GetVerb())
		}
	}
	// A new CA bundle is written.
	if err := EnsureConfiguration(ctx, client, o, []byte("ca2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := configs.Get(ctx, o.Name, metav1.GetOptions{}); string(got.Webhooks[0].ClientConfig.CABundle) != "ca2" {
		t.Errorf("CA bundle %q", got.Webhooks[0].ClientConfig.CABundle)
	}
}
