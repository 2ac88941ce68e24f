# One real node for the dev cluster (sourced by scripts/dev-cluster.sh): containerd + runc + CNI
# from Debian and the control plane's own kubelet, in a network namespace of its own with no route
# out (a veth pair to this host, where a relay reaches the API server), beside the kwok nodes.
# Host-wide by nature (fixed paths under /var/lib and /run, three kernel sysctls the kubelet
# sets): one per machine. See REAL-NODE facts in ARCHITECTURE.md.
#
# node_up    STATE BIN API_PORT   after the API server is up; prints COMMAND_IMAGE=<ref>
# node_down  STATE                stops and removes everything node_up made, also after a crash

NODE_NAME=kubeinvoke-node
NODE_NETNS=kubeinvoke-node
NODE_HOST_IP=10.200.0.1
NODE_IP=10.200.0.2
NODE_SERVICE_IP=10.96.0.1
NODE_POD_CIDR=10.244.0.0/24
NODE_TAINT=kubeinvoke.io/real-node
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
NODE_DIRS=(/var/lib/kubelet /var/lib/containerd /run/containerd /var/lib/cni /var/log/pods /var/log/containers /run/nri)

node_in() { nsenter --net="/run/netns/$NODE_NETNS" "$@"; }

node_start() { # STATE NAME COMMAND...: in the node's network namespace, own session, log and pid under STATE
  local state="$1" name="$2"; shift 2
  setsid nsenter --net="/run/netns/$NODE_NETNS" "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$state/pids/$name"
}

node_up() {
  local state="$1" bin="$2" api_port="$3" node="$1/node" pki="$1/pki"
  for tool in containerd containerd-shim-runc-v2 runc socat ctr nsenter ip; do
    command -v "$tool" >/dev/null || { echo "the real node needs $tool (scripts/test.sh installs it)" >&2; return 1; }
  done
  node_down "$state" 2>/dev/null || true
  mkdir -p "$node/cni" "$node/images"
  # The kernel settings the kubelet changes (protectKernelDefaults: false), restored by node_down.
  for setting in "${NODE_SYSCTLS[@]}"; do echo "$setting=$(sysctl -n "$setting")"; done >"$node/sysctls"
  cp "$node/sysctls" /run/kubeinvoke-node.sysctls

  ip netns add "$NODE_NETNS"
  ip link add ki-host type veth peer name ki-node
  ip link set ki-node netns "$NODE_NETNS"
  ip addr add "$NODE_HOST_IP/30" dev ki-host
  ip link set ki-host up
  node_in ip link set lo up
  node_in ip addr add "$NODE_IP/30" dev ki-node
  node_in ip link set ki-node up
  # The kubernetes Service's address is the node's own, relayed to the API server: in-cluster
  # configuration works unchanged and no route leads anywhere else.
  node_in ip addr add "$NODE_SERVICE_IP/32" dev lo
  setsid socat "TCP-LISTEN:$api_port,bind=$NODE_HOST_IP,fork,reuseaddr" "TCP:127.0.0.1:$api_port" \
    >"$state/logs/node-relay.log" 2>&1 </dev/null &
  echo $! >"$state/pids/node-relay"
  node_start "$state" service-relay socat "TCP-LISTEN:443,bind=$NODE_SERVICE_IP,fork,reuseaddr" "TCP:$NODE_HOST_IP:$api_port"
  # The same address from this host: a cluster registered with https://10.96.0.1 is reached alike
  # by the server and by a command Pod acting as its caller (the one route into the node's
  # namespace; the node has none out).
  ip route add "$NODE_SERVICE_IP/32" via "$NODE_IP" dev ki-host
  # Pods reach this host's end of the link (where a test serves a database, as a cluster's
  # network would), and its answers find their way back; nothing beyond it.
  ip route add "$NODE_POD_CIDR" via "$NODE_IP" dev ki-host

  certificate kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
  cat >"$node/kubelet.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster: {server: "https://$NODE_HOST_IP:$api_port", certificate-authority-data: $(base64 -w0 "$pki/ca.crt")}
users:
- name: kubelet
  user: {client-certificate-data: $(base64 -w0 "$pki/kubelet.crt"), client-key-data: $(base64 -w0 "$pki/kubelet.key")}
contexts:
- name: dev
  context: {cluster: dev, user: kubelet}
current-context: dev
KC
  chmod 600 "$node/kubelet.kubeconfig"
  : >"$node/resolv.conf"
  cat >"$node/containerd.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni"
TOML
  cat >"$node/cni/10-kubeinvoke.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "kubeinvoke", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
            "routes": [{"dst": "10.96.0.0/16"}, {"dst": "$NODE_HOST_IP/32"}]}}
]}
CNI
  # The images, built here and imported: no registry is reachable.
  local images pause_image command_image
  images=$("$here/command-image.sh" "$bin" "$node/images")
  command_image=$(echo "$images" | sed -n 's/^COMMAND_IMAGE=//p')
  pause_image=$(echo "$images" | sed -n 's/^PAUSE_IMAGE=//p')
  sed -i "s|PAUSE_IMAGE|$pause_image|" "$node/containerd.toml"
  node_start "$state" containerd containerd --config "$node/containerd.toml"
  local deadline=$(( $(date +%s) + 30 ))
  until ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "containerd did not start; see $state/logs/containerd.log" >&2; return 1; }
    sleep 0.2
  done
  for image in "$node/images/pause.tar" "$node/images/command-runtime.tar"; do
    ctr --address /run/containerd/containerd.sock -n k8s.io images import --all-platforms "$image" >/dev/null
  done

  cat >"$node/kubelet.yaml" <<KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
protectKernelDefaults: false
failSwapOn: false
address: $NODE_IP
port: 10250
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
resolvConf: "$node/resolv.conf"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
registerWithTaints: [{key: "$NODE_TAINT", value: "true", effect: NoSchedule}]
KUBELET
  node_start "$state" kubelet "$bin/kubelet" --config "$node/kubelet.yaml" --kubeconfig "$node/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir /var/lib/kubelet \
    --node-labels "$NODE_TAINT=true,type=real"
  echo "COMMAND_IMAGE=$command_image" >"$node/command-image"
  # The admin's kubeconfig at the kubernetes Service address, usable inside Pods too.
  sed "s|server: https://127.0.0.1:$api_port|server: https://$NODE_SERVICE_IP:443|" "$state/admin.kubeconfig" \
    >"$node/service.kubeconfig"
  chmod 600 "$node/service.kubeconfig"
}

node_down() {
  local state="$1" pid
  for component in kubelet containerd service-relay node-relay; do
    pid=$(cat "$state/pids/$component" 2>/dev/null) || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/pids/$component"
  done
  # What outlives them, or a run whose state directory is gone: the node's programs by their
  # exact arguments, the shims by their containerd address, then mounts, namespaces, cgroups.
  pkill -9 -f -- '--config [^ ]*/node/kubelet.yaml' 2>/dev/null || true
  pkill -9 -f -- '^containerd --config [^ ]*/node/containerd.toml' 2>/dev/null || true
  pkill -9 -f -- "socat TCP-LISTEN:[0-9]+,bind=($NODE_HOST_IP|$NODE_SERVICE_IP)," 2>/dev/null || true
  pkill -9 -f 'containerd-shim-runc-v2 .*-address /run/containerd/containerd.sock' 2>/dev/null || true
  local dir
  for dir in "${NODE_DIRS[@]}"; do
    { grep -o " $dir[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r mount; do
      umount -l "$mount" 2>/dev/null || true
    done
  done
  for netns in /run/netns/cni-*; do
    if [ -e "$netns" ]; then ip netns del "$(basename "$netns")" 2>/dev/null || true; fi
  done
  ip netns del "$NODE_NETNS" 2>/dev/null || true
  ip link del ki-host 2>/dev/null || true
  for controller in /sys/fs/cgroup/*/; do
    for group in kubepods k8s.io; do
      if [ -d "$controller$group" ]; then find "$controller$group" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
  done
  rm -rf "${NODE_DIRS[@]}"
  local saved=/run/kubeinvoke-node.sysctls
  if [ -e "$saved" ]; then
    while IFS='=' read -r setting value; do sysctl -q -w "$setting=$value" >/dev/null || true; done <"$saved"
    rm -f "$saved"
  fi
}
