//go:build tools

// Package tools pins the commands internal/sandbox/tools.go builds from this module: the control plane, etcd,
// kwok and the metrics-server, in one module so that every dependency they share is compiled once.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
