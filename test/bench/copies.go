package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/tetherkube/tether/api"
)

// copiesNamespace holds the W4 ConfigMaps and the pods that use them, on the virtual node of m1.
const copiesNamespace = "bench-w4"

// configMapsPerPod is how many ConfigMaps each W4 pod mounts.
const configMapsPerPod = 100

// copiesResult is W4: every ConfigMap changed on the host at once, until every member copy carries the change.
type copiesResult struct {
	ConfigMaps int `json:"configMaps"`
	Pods       int `json:"pods"`
	// AllCurrent is first update sent → last member copy current; Lag per ConfigMap update sent → copy current.
	AllCurrent time.Duration `json:"allCurrent"`
	Lag        latency       `json:"lag"`
	Current    int           `json:"current"`
	// TetherRequests are tether-node's requests meanwhile (per ConfigMap), from its own counters.
	TetherRequests []apiCount `json:"tetherRequests"`
	UpdateErrors   int        `json:"updateErrors"`
}

// runCopies creates o.ConfigMaps ConfigMaps and pods on tether-m1 that mount them all, waits for their copies in
// m1, then changes every ConfigMap on the host at once and times each copy until it carries the change.
func runCopies(ctx context.Context, e *env, o *options) (*copiesResult, error) {
	n := o.ConfigMaps
	res := &copiesResult{ConfigMaps: n, Pods: (n + configMapsPerPod - 1) / configMapsPerPod}
	host, m1 := e.host.client.CoreV1(), e.member("m1").client.CoreV1()
	if _, err := host.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: copiesNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cm-%05d", i)
	}
	if errs := parallel(ctx, names, o.Concurrency, func(ctx context.Context, name string) error {
		_, err := host.ConfigMaps(copiesNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string]string{"v": "0"}}, metav1.CreateOptions{})
		return err
	}); errs > 0 {
		return nil, fmt.Errorf("w4: %d ConfigMap creates failed", errs)
	}
	for p := range res.Pods {
		pod := benchPod(fmt.Sprintf("user-%03d", p), map[string]string{api.LabelMember: "m1"})
		for _, name := range names[p*configMapsPerPod : min((p+1)*configMapsPerPod, n)] {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}})
		}
		if _, err := host.Pods(copiesNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, o.RunTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := m1.ConfigMaps(copiesNamespace).List(ctx, metav1.ListOptions{LabelSelector: api.LabelManagedBy + "=" + api.ManagedByTether})
		return err == nil && len(l.Items) == n, nil
	}); err != nil {
		return nil, fmt.Errorf("w4: member copies not all there: %w", err)
	}

	// Watch the copies from now on, and stamp each the moment it carries v=1.
	l, err := m1.ConfigMaps(copiesNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	w, err := m1.ConfigMaps(copiesNamespace).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	sent, current := map[string]time.Time{}, map[string]time.Time{}
	all := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || ev.Type != watch.Modified && ev.Type != watch.Added || cm.Data["v"] != "1" {
				continue
			}
			mu.Lock()
			if _, seen := current[cm.Name]; !seen {
				current[cm.Name] = time.Now()
				if len(current) == n {
					close(all)
				}
			}
			mu.Unlock()
		}
	}()
	before, _ := e.debug.metrics(ctx)
	start := time.Now()
	res.UpdateErrors = parallel(ctx, names, o.Concurrency, func(ctx context.Context, name string) error {
		mu.Lock()
		sent[name] = time.Now()
		mu.Unlock()
		_, err := host.ConfigMaps(copiesNamespace).Patch(ctx, name, types.MergePatchType, []byte(`{"data":{"v":"1"}}`), metav1.PatchOptions{})
		return err
	})
	select {
	case <-all:
	case <-time.After(o.RunTimeout):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	time.Sleep(2 * time.Second) // trailing writes land in the counters
	if after, err := e.debug.metrics(ctx); err == nil {
		for k, v := range tetherRequests(after, e.clusterOf).sub(tetherRequests(before, e.clusterOf)) {
			res.TetherRequests = append(res.TetherRequests, apiCount{Cluster: k.Cluster, Component: tetherComponent,
				Verb: k.Verb, Resource: k.Resource, Count: int(v), PerPod: v / float64(n)})
		}
		sortCounts(res.TetherRequests)
	}
	mu.Lock()
	defer mu.Unlock()
	var lags []time.Duration
	var last time.Time
	for name, at := range current {
		lags = append(lags, at.Sub(sent[name]))
		if at.After(last) {
			last = at
		}
	}
	res.Current = len(current)
	res.Lag = summarize(lags)
	if !last.IsZero() {
		res.AllCurrent = last.Sub(start)
	}
	// Leave nothing for the next workload.
	if err := host.Namespaces().Delete(ctx, copiesNamespace, metav1.DeleteOptions{}); err != nil {
		return res, err
	}
	if res.Current < n {
		return res, fmt.Errorf("w4: %d of %d copies current after %s", res.Current, n, o.RunTimeout)
	}
	return res, nil
}

// parallel runs f for every name with concurrency workers and returns how many failed.
func parallel(ctx context.Context, names []string, concurrency int, f func(context.Context, string) error) int {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	next := make(chan string)
	for range max(concurrency, 1) {
		wg.Go(func() {
			for name := range next {
				if err := f(ctx, name); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	for _, name := range names {
		select {
		case next <- name:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return failed
}

// printCopies prints W4.
func printCopies(w interface{ Write([]byte) (int, error) }, r *copiesResult) {
	fmt.Fprintf(w, "\nW4 copies (%d ConfigMaps used by %d pods on tether-m1, all changed on the host at once)\n", r.ConfigMaps, r.Pods)
	fmt.Fprintf(w, "update sent → member copy current: p50 %s, p90 %s, p99 %s, max %s; all %d current %s after the first update\n",
		secs(r.Lag.P50), secs(r.Lag.P90), secs(r.Lag.P99), secs(r.Lag.Max), r.Current, secs(r.AllCurrent))
	counts := slices.Clone(r.TetherRequests)
	for _, c := range counts {
		fmt.Fprintf(w, "  tether-node %-6s %-6s %-14s %6d  (%.2f per ConfigMap)\n", c.Cluster, c.Verb, c.Resource, c.Count, c.PerPod)
	}
}
