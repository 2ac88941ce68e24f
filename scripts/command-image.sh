#!/usr/bin/env bash
# Builds the command runtime image (deploy/command-image/contents.txt) and the pod sandbox's pause
# image offline, from this host's binaries and the control plane's build, as OCI archives:
#   scripts/command-image.sh BIN_DIR OUT_DIR     prints COMMAND_IMAGE=<ref> and PAUSE_IMAGE=<ref>
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1" out="$2"
version=$("$bin/kubectl" version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')
command_image="kubeinvoke.local/command-runtime:$version"
pause_image="kubeinvoke.local/pause:$version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

. "$here/lib/rootfs.sh"

# The command runtime: bash, busybox (sh, unzip and the usual tools), kubectl and helm at the
# cluster's version, CA certificates, and the unprivileged user commands run as.
rootfs="$work/command"
mkdir -p "$rootfs"/{bin,usr/local/bin,command}
base_rootfs "$rootfs" 1000 command /home/command
copy_with_libraries "$rootfs" /bin/bash
install -m 0755 /bin/busybox "$rootfs/bin/busybox"
for tool in $(/bin/busybox --list); do
  [ -e "$rootfs/bin/$tool" ] || ln -s busybox "$rootfs/bin/$tool"
done
install -m 0755 "$bin/kubectl" "$bin/helm" "$rootfs/usr/local/bin/"
python3 "$here/lib/oci-image.py" "$command_image" "$rootfs" "$out/command-runtime.tar" \
  --env PATH=/usr/local/bin:/usr/bin:/bin --env HOME=/home/command --user 1000

# The pause image: the static program of the control plane's module.
pause="$work/pause"
mkdir -p "$pause"
install -m 0755 "$bin/pause" "$pause/pause"
python3 "$here/lib/oci-image.py" "$pause_image" "$pause" "$out/pause.tar" --entrypoint /pause

echo "COMMAND_IMAGE=$command_image"
echo "PAUSE_IMAGE=$pause_image"
