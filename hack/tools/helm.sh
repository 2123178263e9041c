#!/usr/bin/env bash
# hack/tools/helm.sh prints the folder that holds helm, helm-docs and the helm-unittest plugin
# (plugins/unittest/{plugin.yaml,untt}, for HELM_PLUGINS=<folder>/plugins), building them first from their pins
# (hack/tools/helm, hack/tools/helm-unittest, hack/tools/helm-docs) through the Go module proxy into
# $TETHER_CACHE_DIR/tools/helm-<key> (default ~/.cache/tether, like the control plane). The key hashes the pins,
# this script and the Go version: a changed pin rebuilds, anything else reuses. Nothing is downloaded but modules.
# Cold build: about 3 minutes on 2 quiet cores; warm: instant. Concurrent callers wait for each other (flock).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cache=${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}
modules=(helm helm-unittest helm-docs)

key=$({
  go env GOVERSION
  cat "$0"
  for m in "${modules[@]}"; do cat "$root/$m/go.mod" "$root/$m/go.sum" "$root/$m/tools.go"; done
} | sha256sum | cut -c1-16)
dir=$cache/tools/helm-$key

complete() {
  [ -x "$1/helm" ] && [ -x "$1/helm-docs" ] && [ -x "$1/plugins/unittest/untt" ] && [ -f "$1/plugins/unittest/plugin.yaml" ]
}

if ! complete "$dir"; then
  mkdir -p "$cache/tools"
  exec 9>"$cache/tools/helm-$key.lock"
  flock 9
  if ! complete "$dir"; then # nobody built it while we waited
    tmp=$(mktemp -d "$cache/tools/helm-$key.tmp-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    log=$cache/tools/helm-$key-build.log
    echo "building helm, helm-unittest and helm-docs into $dir (first run only: a few minutes; log: $log)" >&2
    build() { # build MODULE OUTPUT PACKAGE [LDFLAGS]
      (cd "$root/$1" && CGO_ENABLED=0 go build -trimpath -o "$2" -ldflags "${4:-}" "$3") >>"$log" 2>&1 ||
        { echo "build of $3 failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
    }
    v=$(cd "$root/helm" && go list -m -f '{{.Version}}' helm.sh/helm/v3)
    # As helm's own Makefile does: its version, and the Kubernetes version of its client-go (v0.37.x → 1.37) as the
    # default of `helm template` and `helm lint` (else 1.20, which the chart's kubeVersion refuses).
    kv=$(cd "$root/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
    kminor=$(echo "$kv" | cut -d. -f2)
    kflags=""
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      kflags="$kflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
    done
    build helm "$tmp/helm" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$v$kflags"
    mkdir -p "$tmp/plugins/unittest"
    build helm-unittest "$tmp/plugins/unittest/untt" github.com/helm-unittest/helm-unittest/cmd/helm-unittest
    uv=$(cd "$root/helm-unittest" && go list -m -f '{{.Version}}' github.com/helm-unittest/helm-unittest)
    # The plugin's own plugin.yaml names per-platform binaries and an install hook that downloads one: ours runs
    # the binary built here.
    cat >"$tmp/plugins/unittest/plugin.yaml" <<EOF
name: unittest
version: "${uv#v}"
usage: unittest for helm charts
description: helm-unittest $uv, built from its module by hack/tools/helm.sh
ignoreFlags: false
command: \$HELM_PLUGIN_DIR/untt
EOF
    dv=$(cd "$root/helm-docs" && go list -m -f '{{.Version}}' github.com/norwoodj/helm-docs)
    build helm-docs "$tmp/helm-docs" github.com/norwoodj/helm-docs/cmd/helm-docs "-X main.version=${dv#v}"
    chmod 755 "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
    complete "$dir" || { echo "helm tools missing in $dir after the build" >&2; exit 1; }
  fi
fi
echo "$dir"
