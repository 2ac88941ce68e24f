#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for people and tests:
#   etcd + kube-apiserver (TLS, client certificates and JWT authentication, RBAC) +
#   kube-controller-manager + kube-scheduler + kwok driving three fake nodes (one tainted), and one
#   real node (kubelet + containerd, tainted kubeinvoke.io/real-node=true:NoSchedule) that really
#   runs containers, offline: scripts/lib/real-node.sh. One real node per machine.
#
#   scripts/dev-cluster.sh up   [STATE_DIR]   build if needed, start, wait until ready; prints KUBECONFIG=<path>
#                                             and COMMAND_IMAGE=<ref> (the command image on the real node)
#   scripts/dev-cluster.sh env  [STATE_DIR]   prints KUBECONFIG=<path> of a running one
#   scripts/dev-cluster.sh down [STATE_DIR]   stops exactly the processes `up` started
#
# With KUBEINVOKE_DEV_CLUSTER_OWNER=<pid>, `up` also stops the cluster (and removes STATE_DIR) once that process is gone
# (how test binaries share one cluster). STATE_DIR defaults to ~/.local/state/kubeinvoke/dev-cluster. Everything listens on 127.0.0.1
# (ports chosen free at `up`, below the ephemeral range). Logs: STATE_DIR/logs/. JWT issuers the API server trusts:
# STATE_DIR/authentication.yaml (reloaded by the API server when it changes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command="${1:-}"
state="${2:-${KUBEINVOKE_DEV_CLUSTER:-${XDG_STATE_HOME:-$HOME/.local/state}/kubeinvoke/dev-cluster}}"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

. "$here/lib/real-node.sh"

say() { echo "dev-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

running() { # COMPONENT: its recorded pid is alive and still that program
  local pid
  pid=$(cat "$state/pids/$1" 2>/dev/null) || return 1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "/$1 "
}

# N distinct free ports below the kernel's ephemeral range: a port the kernel handed out for `bind(0)`
# can be taken by any outgoing connection or test server before our component binds it (it was, in CI).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
wanted = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
found = []
for port in random.sample(range(10000, low), low - 10000):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.append(port)
    if len(found) == wanted:
        break
print(*found)
PY
}

start() { # COMPONENT ARGS...: in the background, own session, log under logs/
  local name="$1"; shift
  setsid "$bin/$name" "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$state/pids/$name"
}

wait_for() { # SECONDS WHAT COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready in time; see $state/logs/"
    for c in "${components[@]}"; do
      if [ -e "$state/pids/$c" ] && ! running "$c"; then die "$c exited; its log ends:
$(tail -n 20 "$state/logs/$c.log")"; fi
    done
    sleep 0.3
  done
}

certificate() { # NAME CN ORG [SAN]: a key and a certificate signed by the cluster CA
  local pki="$state/pki" ext
  ext=$(mktemp)
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ext"
  [ -n "${4:-}" ] && echo "subjectAltName=$4" >>"$ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -subj "/CN=$2${3:+/O=$3}" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
    -extfile "$ext" -out "$pki/$1.crt" 2>/dev/null
  rm -f "$ext" "$pki/$1.csr"
}

kubeconfig() { # NAME: a kubeconfig for the client certificate NAME
  cat >"$state/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 "$state/pki/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$state/pki/$1.crt")
    client-key-data: $(base64 -w0 "$state/pki/$1.key")
contexts:
- name: dev
  context: {cluster: dev, user: $1}
current-context: dev
KC
  chmod 600 "$state/$1.kubeconfig"
}

up() {
  if running kube-apiserver; then echo "KUBECONFIG=$state/admin.kubeconfig"; cat "$state/node/command-image"; return; fi
  bin=$("$here/build-cluster.sh" | tail -n1)
  down_quietly
  rm -rf "$state"
  mkdir -p "$state"/{pki,pids,logs,etcd}
  chmod 700 "$state"
  local pki="$state/pki"
  read -r etcd_port peer_port api_port kwok_port < <(free_ports 4)
  [ -n "$kwok_port" ] || die "no four free ports below the ephemeral range"
  echo "$api_port" >"$state/api-port"

  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -subj "/CN=kubeinvoke-dev-cluster-ca" \
    -days 365 -out "$pki/ca.crt" 2>/dev/null
  certificate apiserver kube-apiserver "" "IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_HOST_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  certificate admin kubernetes-admin system:masters
  certificate controller-manager system:kube-controller-manager ""
  certificate scheduler system:kube-scheduler ""
  certificate kwok kwok-controller system:masters
  certificate kubelet-client kube-apiserver-kubelet-client system:masters
  certificate kwok-serving kwok-node "" "IP:127.0.0.1,DNS:localhost"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  for who in admin controller-manager scheduler kwok; do kubeconfig "$who"; done
  [ -e "$state/authentication.yaml" ] || cat >"$state/authentication.yaml" <<AUTH
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt: []
AUTH
  : >"$state/pod.log"
  { cat "$here/../tools/cluster/config/kwok.yaml"; cat <<LOGS
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: command-output
spec:
  logs:
  - logsFile: $state/pod.log
LOGS
  } >"$state/kwok.yaml"

  start etcd --name dev --data-dir "$state/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "dev=http://127.0.0.1:$peer_port" --log-level warn
  start kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --authentication-config "$state/authentication.yaml" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
    --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP --cert-dir "$pki" --enable-priority-and-fairness=false
  wait_for 120 "the API server" "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" get --raw /readyz
  start kube-controller-manager --kubeconfig "$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --controllers '*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-persistentvolume-binder,-attachdetach'
  start kube-scheduler --kubeconfig "$state/scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/scheduler.kubeconfig" --authorization-kubeconfig "$state/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
  start kwok --kubeconfig "$state/kwok.kubeconfig" -c "$state/kwok.yaml" \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-ip 127.0.0.1 --node-port "$kwok_port" --server-address "127.0.0.1:$kwok_port" \
    --tls-cert-file "$pki/kwok-serving.crt" --tls-private-key-file "$pki/kwok-serving.key"
  local k=("$bin/kubectl" --kubeconfig "$state/admin.kubeconfig")
  "${k[@]}" apply -f - >/dev/null <<NODES
$(for node in node-a node-b node-tainted; do cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-$node
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: kwok-$node
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    pool: $( [ "$node" = node-tainted ] && echo dedicated || echo general )
spec:
$( [ "$node" = node-tainted ] && printf '  taints:\n  - {key: dedicated, value: commands, effect: NoSchedule}\n' || echo "  taints: []" )
NODE
done)
NODES
  wait_for 60 "the kwok nodes" sh -c "[ \"\$('${bin}/kubectl' --kubeconfig '$state/admin.kubeconfig' get nodes --no-headers 2>/dev/null | grep -c ' Ready ')\" = 3 ]"
  wait_for 60 "the default service account" "${k[@]}" get serviceaccount default -n default
  node_up "$state" "$bin" "$api_port" || die "the real node did not start; see $state/logs/"
  wait_for 120 "the real node" sh -c "'${bin}/kubectl' --kubeconfig '$state/admin.kubeconfig' get node $NODE_NAME --no-headers 2>/dev/null | grep -q ' Ready '"
  echo "$bin" >"$state/bin"
  if [ -n "${KUBEINVOKE_DEV_CLUSTER_OWNER:-}" ]; then
    # Tests: the cluster and its state go when the process that asked for it ends, however it ends.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" down "$3" && rm -rf "$3"' _ \
      "$KUBEINVOKE_DEV_CLUSTER_OWNER" "$here/dev-cluster.sh" "$state" >/dev/null 2>&1 </dev/null &
  fi
  say "ready: API server https://127.0.0.1:$api_port, 3 kwok nodes (kwok-node-tainted: dedicated=commands:NoSchedule), real node $NODE_NAME ($NODE_TAINT=true:NoSchedule); logs in $state/logs"
  echo "KUBECONFIG=$state/admin.kubeconfig"
  cat "$state/node/command-image"
}

down_quietly() {
  local c pid
  if [ -d "$state/node" ]; then node_down "$state"; fi
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    if running "$c"; then
      pid=$(cat "$state/pids/$c")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do running "$c" || break; sleep 0.1; done
      running "$c" && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/pids/$c"
  done
}

case "$command" in
  up) up ;;
  down) down_quietly; say "stopped" ;;
  env)
    running kube-apiserver || die "no dev cluster runs under $state (start one: $0 up)"
    echo "KUBECONFIG=$state/admin.kubeconfig" ;;
  *) echo "usage: $0 up|down|env [STATE_DIR]" >&2; exit 2 ;;
esac
