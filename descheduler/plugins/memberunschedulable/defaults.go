package memberunschedulable

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tetherkube/tether/api"
)

// Defaults of the arguments.
const (
	DefaultUnschedulableFor = 30 * time.Second
	DefaultAvoidFor         = 5 * time.Minute
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	scheme.AddTypeDefaultingFunc(&MemberUnschedulableArgs{}, func(obj any) { SetDefaults_MemberUnschedulableArgs(obj.(*MemberUnschedulableArgs)) })
	return nil
}

// SetDefaults_MemberUnschedulableArgs fills the defaults of unset arguments.
func SetDefaults_MemberUnschedulableArgs(obj runtime.Object) {
	args, ok := obj.(*MemberUnschedulableArgs)
	if !ok {
		return
	}
	if args.UnschedulableFor == nil {
		args.UnschedulableFor = &metav1.Duration{Duration: DefaultUnschedulableFor}
	}
	if args.AvoidFor == nil {
		args.AvoidFor = &metav1.Duration{Duration: DefaultAvoidFor}
	}
	if args.AvoidNamespace == "" {
		args.AvoidNamespace = api.DefaultNamespace
	}
	if args.AvoidConfigMap == "" {
		args.AvoidConfigMap = api.DefaultAvoidConfigMap
	}
}
