// Package cli holds what Tether's commands share: the host connection and the logging stack.
package cli

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	logruslogger "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// HostConfig connects to the host cluster: --kubeconfig when given, else the in-cluster config, else $KUBECONFIG
// or ~/.kube/config.
func HostConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no host cluster: not in a cluster, no --kubeconfig, and $KUBECONFIG does not work: %w", err)
	}
	return cfg, nil
}

// WithLogger sets up the one logging stack: virtual-kubelet's facade over logrus, with klog routed into it.
func WithLogger(ctx context.Context, level string) (context.Context, error) {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l := logrus.New()
	l.SetLevel(lvl)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	entry := logrus.NewEntry(l)
	logger := logruslogger.FromLogrus(entry)
	log.L = logger
	klog.SetOutput(entry.WithField("source", "klog").WriterLevel(logrus.InfoLevel))
	klog.LogToStderr(false)
	return log.WithLogger(ctx, logger), nil
}
