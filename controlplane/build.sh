#!/usr/bin/env bash
# Builds the test control plane's binaries once into a project-owned cache folder:
#   kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes, through a wrapper module,
#   because upstream's go.mod replaces its staging modules with local paths), kwok, and kustomize's CRDs
#   of KServe and Argo Workflows (from their Go modules). Cold: about 15 minutes on 2 cores; warm: instant.
# Usage: controlplane/build.sh CACHE_DIR
set -euo pipefail
cache=${1:?usage: build.sh CACHE_DIR}
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=v1.33.13
staging_version=v0.33.13
kwok_version=v0.8.0
kserve_version=v0.15.2
argo_version=v3.6.5
bin=$cache/bin
mkdir -p "$bin" "$cache/go"
export GOPATH=$cache/go/path GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOFLAGS=-modcacherw
command -v go >/dev/null || { echo "the control plane is built with Go (https://go.dev/dl); install Go first" >&2; exit 1; }

if [ ! -x "$bin/kube-apiserver" ] || [ "$("$bin/kube-apiserver" --version 2>/dev/null)" != "Kubernetes $k8s_version" ]; then
  work=$cache/k8s-wrapper
  rm -rf "$work" && mkdir -p "$work"
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$k8s_version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module tabpipe.local/controlplane"
    echo
    grep -E '^go [0-9]' "$upstream_mod"
    echo "require k8s.io/kubernetes $k8s_version"
    # One replace per staging module upstream points at ./staging/...
    grep -E '=> \./staging/' "$upstream_mod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  cp "$here/tools.go" "$work/tools.go"
  (cd "$work" && go mod tidy >/dev/null)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=33"
  (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$bin/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
fi

# kubectl of the same version (a distribution's may be too old for `kubectl create token`).
if [ ! -x "$bin/kubectl" ]; then
  work=$cache/k8s-wrapper
  grep -q 'cmd/kubectl"' "$work/tools.go" 2>/dev/null || {
    cp "$here/tools.go" "$work/tools.go" && (cd "$work" && go mod tidy >/dev/null)
  }
  ldflags="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitVersion=$k8s_version"
  (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$bin/" k8s.io/kubernetes/cmd/kubectl)
fi

if [ ! -x "$bin/kwok" ]; then
  GOBIN=$bin go install "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
fi

# CRDs and KWOK's stage set, copied out of their modules so tests need no Go.
crds=$cache/crds
if [ ! -f "$crds/.done-2-$kserve_version-$argo_version-$kwok_version" ]; then
  rm -rf "$crds" && mkdir -p "$crds/kserve" "$crds/argo"
  kserve_dir=$(go mod download -json "github.com/kserve/kserve@$kserve_version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$kserve_dir"/config/crd/full/serving.kserve.io_inferenceservices.yaml "$kserve_dir"/config/crd/full/serving.kserve.io_servingruntimes.yaml "$crds/kserve/"
  argo_dir=$(go mod download -json "github.com/argoproj/argo-workflows/v3@$argo_version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$argo_dir"/manifests/base/crds/minimal/argoproj.io_*.yaml "$crds/argo/"
  kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$kwok_version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  kubectl kustomize "$kwok_dir/kustomize/stage/fast" > "$crds/kwok-stages-fast.yaml"
  touch "$crds/.done-2-$kserve_version-$argo_version-$kwok_version"
fi
echo "control plane binaries in $bin"
