//go:build tools

// Package tools records helm-docs, which `make chart-test` builds (hack/tools/helm.sh) to check charts/tether/README.md.
package tools

import _ "github.com/norwoodj/helm-docs/cmd/helm-docs"
