package memberunschedulable

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidateMemberUnschedulableArgs reports every problem of the arguments at once.
func ValidateMemberUnschedulableArgs(obj runtime.Object) error {
	args, ok := obj.(*MemberUnschedulableArgs)
	if !ok {
		return fmt.Errorf("want args of type MemberUnschedulableArgs, got %T", obj)
	}
	var errs field.ErrorList
	if args.UnschedulableFor != nil && args.UnschedulableFor.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("unschedulableFor"), args.UnschedulableFor.Duration.String(), "must be positive"))
	}
	if args.AvoidFor != nil && args.AvoidFor.Duration < 0 {
		errs = append(errs, field.Invalid(field.NewPath("avoidFor"), args.AvoidFor.Duration.String(), "must not be negative"))
	}
	if args.AvoidNamespace != "" {
		for _, msg := range validation.IsDNS1123Label(args.AvoidNamespace) {
			errs = append(errs, field.Invalid(field.NewPath("avoidNamespace"), args.AvoidNamespace, msg))
		}
	}
	if args.AvoidConfigMap != "" {
		for _, msg := range validation.IsDNS1123Subdomain(args.AvoidConfigMap) {
			errs = append(errs, field.Invalid(field.NewPath("avoidConfigMap"), args.AvoidConfigMap, msg))
		}
	}
	if ns := args.Namespaces; ns != nil && len(ns.Include) > 0 && len(ns.Exclude) > 0 {
		errs = append(errs, field.Forbidden(field.NewPath("namespaces"), "only one of include and exclude may be set"))
	}
	if args.LabelSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(args.LabelSelector); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("labelSelector"), args.LabelSelector.String(), err.Error()))
		}
	}
	return errs.ToAggregate()
}
