#!/usr/bin/env bash
# hack/tools/helm.sh prints the folder that holds helm, helm-docs and the helm-unittest plugin
# (plugins/unittest/{plugin.yaml,untt}, for HELM_PLUGINS=<folder>/plugins), building them first from their pin
# (the module hack/tools/helm) through the Go module proxy into $TETHER_CACHE_DIR/tools/helm-<key> (default
# ~/.cache/tether, like the control plane). The key hashes the pin, this script and the Go version: a changed pin
# rebuilds, anything else reuses. Nothing is downloaded but modules.
# Cold build: about 3 minutes on 2 quiet cores; warm: instant. Concurrent callers wait for each other (flock).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cache=${TETHER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tether}

key=$({
  go env GOVERSION
  cat "$0"
  cat "$root/helm/go.mod" "$root/helm/go.sum" "$root/helm/tools.go"
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
    build() { # build OUTPUT PACKAGE [LDFLAGS]
      (cd "$root/helm" && CGO_ENABLED=0 go build -trimpath -o "$1" -ldflags "${3:-}" "$2") >>"$log" 2>&1 ||
        { echo "build of $2 failed, see $log" >&2; tail -20 "$log" >&2; exit 1; }
    }
    version() { (cd "$root/helm" && go list -m -f '{{.Version}}' "$1"); }
    v=$(version helm.sh/helm/v3)
    # As helm's own Makefile does: its version, and the Kubernetes version of its client-go (v0.37.x → 1.37) as the
    # default of `helm template` and `helm lint` (else 1.20, which the chart's kubeVersion refuses).
    kv=$(version k8s.io/client-go)
    kminor=$(echo "$kv" | cut -d. -f2)
    kflags=""
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      kflags="$kflags -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
    done
    build "$tmp/helm" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$v$kflags"
    mkdir -p "$tmp/plugins/unittest"
    build "$tmp/plugins/unittest/untt" github.com/helm-unittest/helm-unittest/cmd/helm-unittest
    uv=$(version github.com/helm-unittest/helm-unittest)
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
    dv=$(version github.com/norwoodj/helm-docs)
    build "$tmp/helm-docs" github.com/norwoodj/helm-docs/cmd/helm-docs "-X main.version=${dv#v}"
    chmod 755 "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
    complete "$dir" || { echo "helm tools missing in $dir after the build" >&2; exit 1; }
  fi
fi
echo "$dir"
