package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
)

// ErrLeaseLost is what a leader's run returns once it lost the lease and stopped serving: main exits non-zero, so
// that its Deployment starts it again as a standby.
var ErrLeaseLost = errors.New("lost the leader lease")

// leaderHealthzTolerance is how long past its lease duration a leader may go without renewing before /healthz
// fails (kube-controller-manager's value).
const leaderHealthzTolerance = 20 * time.Second

// runElected waits to hold the Lease le names in namespace, then runs serve until ctx ends or the lease is lost. A
// standby serves nothing: no informers, virtual nodes or kubelet API. The lease is released (ReleaseOnCancel) only
// once serve has returned, so that two replicas never serve at once on a clean shutdown. watchdog, when not nil,
// is the /healthz check of this elector.
func runElected(ctx context.Context, le LeaderElection, namespace string, host kubernetes.Interface, recorder record.EventRecorder,
	watchdog *leaderelection.HealthzAdaptor, serve func(context.Context) error) error {
	id := le.Identity
	if id == "" {
		var err error
		if id, err = defaultIdentity(); err != nil {
			return err
		}
	}
	logger := log.G(ctx).WithField("identity", id).WithField("lease", namespace+"/"+le.ResourceName)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: le.ResourceName},
		Client:     host.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id, EventRecorder: recorder},
	}
	leading := make(chan context.Context, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.ResourceName,
		WatchDog:        watchdog,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) { leading <- lctx },
			OnStoppedLeading: func() { logger.Info("not leading any more") },
			OnNewLeader: func(holder string) {
				if holder != id {
					logger.WithField("leader", holder).Info("another replica leads; standing by")
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	if watchdog != nil { // client-go ties them only in RunOrDie
		watchdog.SetLeaderElection(elector)
	}
	// The elector's own lifetime ends when serving has stopped, not when ctx does.
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		elector.Run(electCtx)
	}()
	logger.Info("waiting for the leader lease")
	select {
	case <-ctx.Done():
		stopElection()
		<-elected
		return nil
	case <-elected:
		return errors.New("leader election ended before this replica led")
	case lctx := <-leading:
		logger.Info("leading: serving the virtual nodes")
		serveCtx, cancel := context.WithCancel(lctx)
		stop := context.AfterFunc(ctx, cancel)
		err := serve(serveCtx)
		stop()
		cancel()
		lost := lctx.Err() != nil && ctx.Err() == nil
		stopElection()
		<-elected
		if lost {
			logger.Error("lost the leader lease: stopped serving")
			return errors.Join(ErrLeaseLost, err)
		}
		return err
	}
}

// defaultIdentity is the host name and a random suffix: two replicas on one host (or a restarted pod of the same
// name) never share an identity.
func defaultIdentity() (string, error) {
	name, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("leader election identity: %w", err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("leader election identity: %w", err)
	}
	return name + "_" + hex.EncodeToString(b), nil
}
