//go:build tools

// Package tools pins metrics-server, which the harness runs in member clusters so that they serve metrics.k8s.io
// (what Tether's kubelet API reads for /stats/summary and /metrics/resource).
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
