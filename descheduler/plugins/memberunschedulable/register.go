package memberunschedulable

import (
	"k8s.io/apimachinery/pkg/runtime"
)

var (
	// SchemeBuilder registers the plugin's defaulting function, as upstream plugins do.
	SchemeBuilder      = runtime.NewSchemeBuilder()
	localSchemeBuilder = &SchemeBuilder
	// AddToScheme adds the defaulting function to a scheme.
	AddToScheme = localSchemeBuilder.AddToScheme
)

func init() {
	localSchemeBuilder.Register(addDefaultingFuncs)
}
