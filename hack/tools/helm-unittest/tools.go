//go:build tools

// Package tools records the helm-unittest plugin that `make chart-test` builds (hack/tools/helm.sh).
package tools

import _ "github.com/helm-unittest/helm-unittest/cmd/helm-unittest"
