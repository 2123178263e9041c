//go:build tools

// Package tools records the helm command that `make chart-test` builds (hack/tools/helm.sh).
package tools

import _ "helm.sh/helm/v3/cmd/helm"
