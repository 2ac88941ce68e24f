#!/usr/bin/env bash
# Builds the local control plane (tools/cluster: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm, etcd, kwok), the real node's kubelet and its pause program, from
# the Go module proxy, once per pinned set of
# versions: outputs live under a cache directory keyed by go.mod + go.sum, so a warm machine pays
# nothing. Prints the bin directory on its last line.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/../tools/cluster"

key=$(cat go.mod go.sum "$script" | sha256sum | cut -c1-16)
cache="${KUBEINVOKE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubeinvoke/cluster}/$key"
bin="$cache/bin"
tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl helm etcd kwok kubelet pause)

complete() { for t in "${tools[@]}"; do [ -x "$bin/$t" ] || return 1; done; }

if ! complete; then
  echo "building the local control plane into $bin (first time on this machine: 10-20 min on 2 cores)" >&2
  start=$(date +%s)
  mkdir -p "$cache/tmp"
  # Go's build and module caches (4 GB after this build) live beside the outputs and go once
  # the binaries are in place: the outputs are the cache, and CI machines are short of disk.
  export GOCACHE="$cache/go-build" GOMODCACHE="$cache/go-mod" GOFLAGS="${GOFLAGS:-} -modcacherw"
  # The versions the release builds stamp in (kubectl and helm compare them with the server's).
  k8s=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
  minor=$(echo "$k8s" | cut -d. -f2)
  helm=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
  stamp="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
  stamp+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  stamp+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1"
  stamp+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor -X helm.sh/helm/v3/internal/version.version=$helm"
  # -trimpath and no DWARF: smaller, reproducible binaries; CGO off: no C toolchain at runtime.
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $stamp" -o "$cache/tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    helm.sh/helm/v3/cmd/helm \
    sigs.k8s.io/kwok/cmd/kwok \
    ./etcd
  # The pod sandbox's program, from the same module (a static C program, as upstream builds it).
  pause_c="$GOMODCACHE/k8s.io/kubernetes@$k8s/build/pause/linux/pause.c"
  gcc -Os -static -DVERSION="$k8s" -o "$cache/tmp/pause" "$pause_c"
  rm -rf "$bin" && mv "$cache/tmp" "$bin"
  rm -rf "$GOCACHE" "$GOMODCACHE"
  echo "built in $(( $(date +%s) - start )) s" >&2
fi
echo "$bin"
