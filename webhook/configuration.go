package webhook

import (
	"bytes"
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/tetherkube/tether/api"
)

// WebhookName is the name of the one webhook in the configuration.
const WebhookName = "pods.tether.io"

// ConfigurationOptions describe the MutatingWebhookConfiguration tether-webhook keeps up to date.
type ConfigurationOptions struct {
	Name string
	// URL, when set, is where the host apiserver calls the webhook (https://host:port/mutate); otherwise Service.
	URL     string
	Service *admissionregistrationv1.ServiceReference
	// NamespaceSelector picks the namespaces whose pods are offloaded; SkipNamespaces are excluded whatever it says.
	NamespaceSelector *metav1.LabelSelector
	SkipNamespaces    []string
	FailurePolicy     admissionregistrationv1.FailurePolicyType
	TimeoutSeconds    int32
}

// Configuration renders the MutatingWebhookConfiguration for a CA bundle.
func Configuration(o ConfigurationOptions, caBundle []byte) *admissionregistrationv1.MutatingWebhookConfiguration {
	sel := o.NamespaceSelector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	if len(o.SkipNamespaces) > 0 {
		sel.MatchExpressions = append(sel.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: o.SkipNamespaces})
	}
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: caBundle}
	if o.URL != "" {
		cc.URL = ptr.To(o.URL)
	} else {
		cc.Service = o.Service.DeepCopy()
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: api.ManagedLabels()},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    WebhookName,
			ClientConfig:            cc,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(o.FailurePolicy),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
			NamespaceSelector:       sel,
			ObjectSelector:          &metav1.LabelSelector{},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}},
		}},
	}
}

// EnsureConfiguration creates the configuration or updates it when it differs from what it should be.
func EnsureConfiguration(ctx context.Context, client kubernetes.Interface, o ConfigurationOptions, caBundle []byte) error {
	want := Configuration(o, caBundle)
	configs := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	have, err := configs.Get(ctx, o.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := configs.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create MutatingWebhookConfiguration %s: %w", o.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read MutatingWebhookConfiguration %s: %w", o.Name, err)
	}
	if len(have.Webhooks) == 1 && bytes.Equal(have.Webhooks[0].ClientConfig.CABundle, caBundle) &&
		equality.Semantic.DeepEqual(have.Webhooks, want.Webhooks) && have.Labels[api.LabelManagedBy] == api.ManagedByTether {
		return nil
	}
	up := have.DeepCopy()
	up.Webhooks = want.Webhooks
	if up.Labels == nil {
		up.Labels = map[string]string{}
	}
	up.Labels[api.LabelManagedBy] = api.ManagedByTether
	if _, err := configs.Update(ctx, up, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update MutatingWebhookConfiguration %s: %w", o.Name, err)
	}
	return nil
}
