//go:build tools

// Package tools pins what `make chart-test` runs (hack/tools/helm.sh builds them): helm, the helm-unittest plugin
// and helm-docs, in one module whose dependency versions are the control-plane pin's (hack/tools/kubernetes), so
// that they compile nothing the rest of the build has not compiled already.
package tools

import (
	_ "github.com/helm-unittest/helm-unittest/cmd/helm-unittest"
	_ "github.com/norwoodj/helm-docs/cmd/helm-docs"
	_ "helm.sh/helm/v3/cmd/helm"
)
