package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/internal/sandbox"
)

// Namespaces of the W1 bursts.
const (
	tetherNamespace  = "bench-w1"
	vanillaNamespace = "bench-vanilla"
)

// run is the whole bench: the timed pass (W1 pairs, W2, W3), then the audited pass, then the report.
func run(ctx context.Context, o *options, stdout, log io.Writer) error {
	started := time.Now()
	repo, err := sandbox.FindRepoRoot(".")
	if err != nil {
		return err
	}
	cacheDir, err := sandbox.DefaultCacheDir()
	if err != nil {
		return err
	}
	tools, err := sandbox.EnsureTools(ctx, repo, cacheDir, log)
	if err != nil {
		return err
	}
	work := o.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "tether-bench-"); err != nil {
			return err
		}
	}
	if !o.KeepWorkDir {
		defer os.RemoveAll(work)
	} else {
		fmt.Fprintf(log, "work folder (kept): %s\n", work)
	}
	bin, err := buildTetherNode(ctx, repo, filepath.Join(work, "bin"))
	if err != nil {
		return err
	}
	if o.Profiles {
		if err := os.MkdirAll(o.Out, 0o755); err != nil {
			return err
		}
		o.profilePrefix = filepath.Join(o.Out, "tether-node-"+started.UTC().Format("20060102-150405")+"-")
	}
	res := &result{Date: started, Machine: readMachine(), Versions: versions(ctx, repo, tools), Settings: settingsOf(o)}
	printHeader(stdout, res)

	fail := func(what string, err error) {
		fmt.Fprintf(log, "%s: %v\n", what, err)
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	if o.has("w6") {
		if o.schedulerBin, err = buildScheduler(ctx, repo, filepath.Join(work, "bin")); err != nil {
			return err
		}
	}
	if o.has("w1") || o.has("w2") || o.has("w3") || o.has("w4") || o.has("w6") {
		if err := timedPass(ctx, o, tools, bin, filepath.Join(work, "timed"), res, log, fail); err != nil {
			return err
		}
	}
	if o.has("w5") && ctx.Err() == nil {
		bins, err := buildBinaries(ctx, repo, filepath.Join(work, "bin"), sandbox.TetherNode, sandbox.TetherWebhook, sandbox.TetherDescheduler)
		if err == nil {
			res.W5, err = runFragments(ctx, o, tools, bins, filepath.Join(work, "fragments"), log)
		}
		if err != nil {
			fail("w5", err)
		}
	}
	if o.has("w1") && o.Accounting && res.W1 != nil && ctx.Err() == nil {
		acc, err := accountingPass(ctx, o, tools, bin, filepath.Join(work, "audited"), log)
		if err != nil {
			fail("accounting", err)
		}
		res.W1.Accounting = acc
	}
	res.Took = time.Since(started)
	res.Targets = evaluate(res)
	printResults(stdout, res)
	path, err := writeJSON(o.Out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults: %s (took %s)\n", path, res.Took.Round(time.Second))
	if len(res.Errors) > 0 {
		return errors.New("some measurements failed (see above)")
	}
	return ctx.Err()
}

// timedPass runs the selected workloads on clusters without auditing. Only failing to start the clusters is
// returned; a failed workload is reported and the next one runs.
func timedPass(ctx context.Context, o *options, tools *sandbox.Tools, bin, dir string, res *result, log io.Writer, fail func(string, error)) error {
	e, err := upEnv(ctx, o, tools, bin, dir, "bench", "", log)
	if err != nil {
		return err
	}
	defer func() {
		if err := e.down(context.WithoutCancel(ctx)); err != nil {
			fail("stop clusters", err)
		}
	}()
	if o.has("w1") {
		w, err := runW1(ctx, e, o, log)
		res.W1 = w
		if err != nil {
			fail("w1", err)
		}
	}
	if o.has("w6") && ctx.Err() == nil {
		w, err := runW6(ctx, e, o, o.schedulerBin, log)
		res.W6 = w
		if err != nil {
			fail("w6", err)
		}
	}
	if o.has("w2") && ctx.Err() == nil {
		s, err := runScale(ctx, e, o)
		res.W2 = s
		if err != nil {
			fail("w2", err)
		}
	}
	if o.has("w3") && ctx.Err() == nil {
		r, err := runRestart(ctx, e, o)
		res.W3 = r
		if err != nil {
			fail("w3", err)
		}
	}
	if o.has("w4") && ctx.Err() == nil {
		r, err := runCopies(ctx, e, o)
		res.W4 = r
		if err != nil {
			fail("w4", err)
		}
	}
	return nil
}

// runW1 alternates Tether and vanilla bursts, after one small unmeasured burst of each.
func runW1(ctx context.Context, e *env, o *options, log io.Writer) (*w1Result, error) {
	if err := w1Namespaces(ctx, e, o); err != nil {
		return nil, err
	}
	warm := *o
	warm.N = max(10, o.N/10)
	for _, kind := range []string{kindTether, kindVanilla} {
		if _, err := burstAndClean(ctx, e, &warm, kind, 0); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	w := &w1Result{}
	for i := 1; i <= o.Pairs; i++ {
		for _, kind := range []string{kindTether, kindVanilla} {
			r, err := burstAndClean(ctx, e, o, kind, i)
			if r != nil {
				w.Runs = append(w.Runs, r)
				fmt.Fprintf(log, "w1: %s #%d: %d pods Running in %s, %.1f pods/s, p99 %s\n", kind, i, r.Running, secs(r.AllRunning), r.Throughput, secs(r.E2E.P99))
			}
			if err != nil {
				summarizeW1(w)
				return w, err
			}
		}
	}
	summarizeW1(w)
	return w, nil
}

func w1Namespaces(ctx context.Context, e *env, o *options) error {
	// Created up front, with their ServiceAccounts, so that no burst waits for a namespace to be usable.
	for _, c := range append([]*cluster{e.host}, e.members...) {
		if err := ensureNamespace(ctx, c, tetherNamespace); err != nil {
			return err
		}
	}
	if err := ensureNamespace(ctx, e.member("m1"), vanillaNamespace); err != nil {
		return err
	}
	if !o.W1Service {
		return nil
	}
	// -w1-service: a Service selects every burst pod, on the host (mirrored into both members by tether-node) and
	// in m1 for the vanilla burst, so that both pay for their endpoints.
	for _, where := range []struct {
		c  *cluster
		ns string
	}{{e.host, tetherNamespace}, {e.member("m1"), vanillaNamespace}} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "tether-bench"}, Ports: []corev1.ServicePort{{Port: 80}}}}
		if _, err := where.c.client.CoreV1().Services(where.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

func burstAndClean(ctx context.Context, e *env, o *options, kind string, index int) (*burstResult, error) {
	ns, where, also := tetherNamespace, e.host, e.members
	if kind == kindVanilla {
		ns, where, also = vanillaNamespace, e.member("m1"), nil
	}
	r, err := runBurst(ctx, e, o, kind, index, ns)
	return r, errors.Join(err, deleteAll(ctx, where, ns, also))
}

// accountingPass runs one burst of each kind on audited clusters and counts requests per pod.
func accountingPass(ctx context.Context, o *options, tools *sandbox.Tools, bin, dir string, log io.Writer) (_ *accounting, err error) {
	policy := filepath.Join(dir+"-policy", "audit-policy.yaml")
	if err := writeFile(policy, auditPolicy); err != nil {
		return nil, err
	}
	e, err := upEnv(ctx, o, tools, bin, dir, "benchaudit", policy, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.down(context.WithoutCancel(ctx))) }()
	if err := w1Namespaces(ctx, e, o); err != nil {
		return nil, err
	}
	acc := &accounting{N: o.N}
	quiet := *o
	quiet.Profiles = false // profiles come from the timed pass
	for _, kind := range []string{kindTether, kindVanilla} {
		r, err := burstAndClean(ctx, e, &quiet, kind, 1)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "accounting: %s burst: %d pods Running in %s\n", kind, r.Running, secs(r.AllRunning))
		clusters := []*cluster{e.member("m1")}
		if kind == kindTether {
			clusters = append([]*cluster{e.host}, e.members...)
		}
		byCluster := map[string]map[auditKey]int{}
		for _, c := range clusters {
			counts, err := countAuditFile(c.auditLog, r.window[0], r.window[1])
			if err != nil {
				return nil, fmt.Errorf("audit log of %s: %w", c.name, err)
			}
			byCluster[c.name] = counts
		}
		lines := perPod(byCluster, o.N)
		if kind == kindTether {
			acc.Tether = lines
			acc.TetherHost = totals(lines, func(c string) bool { return c == "host" })
			acc.TetherMembers = totals(lines, func(c string) bool { return c != "host" })
		} else {
			acc.Vanilla = lines
			acc.VanillaTotals = totals(lines, func(string) bool { return true })
		}
	}
	return acc, nil
}

func settingsOf(o *options) settings {
	return settings{
		Workloads: o.Workloads, N: o.N, Pairs: o.Pairs, Concurrency: o.Concurrency, ScalePods: o.ScalePods, StalePods: o.StalePods,
		Members:      fmt.Sprintf("2 members × %d kwok nodes × %d pods", o.MemberNodes, o.NodePods),
		Tether:       o.Tether,
		SchedulerQPS: 5000, SchedulerBurst: 10000, KCMQPS: 5000, KCMBurst: 10000, // kwokctl --disable-qps-limits
		APIServer:     "--max-requests-inflight=0 --max-mutating-requests-inflight=0, API priority and fairness off",
		Kwok:          "no client limit",
		LoadGenerator: fmt.Sprintf("no client limit, %d concurrent creates", o.Concurrency),
	}
}

// versions of Go, the pinned control plane and this checkout.
func versions(ctx context.Context, repo string, tools *sandbox.Tools) map[string]string {
	v := map[string]string{"go": runtime.Version(), "kubernetes": tools.KubernetesVersion}
	for name, mod := range map[string]string{"etcd": "go.etcd.io/etcd/server/v3", "kwok": "sigs.k8s.io/kwok"} {
		if pin := requireVersion(filepath.Join(repo, "hack", "tools", name, "go.mod"), mod); pin != "" {
			v[name] = pin
		}
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", repo, "describe", "--always", "--dirty").Output(); err == nil {
		v["tether"] = strings.TrimSpace(string(out))
	}
	return v
}

// requireVersion finds the version a go.mod requires of mod.
func requireVersion(gomod, mod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == mod {
			return fields[1]
		}
	}
	return ""
}
