package forge

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Ref names a ConfigMap or Secret a pod uses; Optional when every use of it is optional.
type Ref struct {
	Name     string
	Optional bool
}

// PodReferences lists the ConfigMaps and Secrets a pod spec uses: volumes (projected sources included), env
// valueFrom, envFrom and imagePullSecrets, each name once, sorted.
func PodReferences(spec *corev1.PodSpec) (configMaps, secrets []Ref) {
	cms, secs := map[string]bool{}, map[string]bool{} // name → optional so far
	add := func(m map[string]bool, name string, optional *bool) {
		if name == "" {
			return
		}
		opt := optional != nil && *optional
		if prev, ok := m[name]; ok {
			m[name] = prev && opt
			return
		}
		m[name] = opt
	}
	for _, v := range spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			add(cms, v.ConfigMap.Name, v.ConfigMap.Optional)
		case v.Secret != nil:
			add(secs, v.Secret.SecretName, v.Secret.Optional)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add(cms, s.ConfigMap.Name, s.ConfigMap.Optional)
				}
				if s.Secret != nil {
					add(secs, s.Secret.Name, s.Secret.Optional)
				}
			}
		}
	}
	containers := slices.Concat(spec.InitContainers, spec.Containers)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				add(cms, e.ConfigMapRef.Name, e.ConfigMapRef.Optional)
			}
			if e.SecretRef != nil {
				add(secs, e.SecretRef.Name, e.SecretRef.Optional)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(cms, r.Name, r.Optional)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(secs, r.Name, r.Optional)
			}
		}
	}
	for _, s := range spec.ImagePullSecrets {
		add(secs, s.Name, nil)
	}
	toRefs := func(m map[string]bool) []Ref {
		var out []Ref
		for _, name := range slices.Sorted(maps.Keys(m)) {
			out = append(out, Ref{Name: name, Optional: m[name]})
		}
		return out
	}
	return toRefs(cms), toRefs(secs)
}
