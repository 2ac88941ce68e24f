#!/usr/bin/env bash
# Builds kubeinvoke's server image offline — what ./Dockerfile builds for registries, for the Pod
# executor: the binary and the libraries it loads, CA certificates, uid 10001 — as an OCI archive,
# named by the binary's digest (a rebuilt binary is a new image, never a stale one on the node).
# With --import it is loaded into the real node's containerd (scripts/dev-cluster.sh).
#   scripts/server-image.sh [--import] BINARY OUT_DIR     prints SERVER_IMAGE=<ref>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
import=false
if [ "${1:-}" = --import ]; then import=true; shift; fi
binary="$1" out="$2"
. "$here/lib/rootfs.sh"

digest=$(sha256sum "$binary" | cut -c1-12)
image="kubeinvoke.local/kubeinvoke:$digest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
base_rootfs "$rootfs" 10001 kubeinvoke /var/lib/kubeinvoke
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/kubeinvoke"
libraries_of "$rootfs" "$binary"
mkdir -p "$out"
python3 "$here/lib/oci-image.py" "$image" "$rootfs" "$out/kubeinvoke.tar" \
  --entrypoint /usr/local/bin/kubeinvoke --env HOME=/var/lib/kubeinvoke --user 10001
if $import; then
  ctr --address /run/containerd/containerd.sock -n k8s.io images import "$out/kubeinvoke.tar" >/dev/null
fi
echo "SERVER_IMAGE=$image"
