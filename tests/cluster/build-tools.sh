#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm), Kueue's controller manager, the real node's kubelet, kube-proxy, containerd (with
# its runc shim and ctr) and pause, and SeaweedFS (the tests' S3 server) from the Go module proxy into a cache
# outside the work tree, keyed by version. Binaries already built are skipped.
# Prints the cache's bin directories, one per line, on stdout when done.
# Safe to run twice at once: each cache key is built under its own lock
# (flock on <cache>/<key>.lock), and every build writes a temporary name of its own.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/tools"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/fluxlora"

if ! command -v go >/dev/null 2>&1; then
  echo "build-tools: 'go' is not on PATH; the test control plane is built from the Go module proxy and needs Go >= 1.24" >&2
  exit 1
fi

# Version of the main module a wrapper requires, read from its go.mod.
required_version() { # dir module
  awk -v m="$2" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' "$tools/$1/go.mod" | head -n1
}

K8S=$(required_version kubernetes k8s.io/kubernetes)
ETCD=$(required_version etcd go.etcd.io/etcd/server/v3)
KWOK=$(required_version kwok sigs.k8s.io/kwok)
HELM=$(required_version helm helm.sh/helm/v3)
CONTAINERD=$(required_version containerd github.com/containerd/containerd/v2)
KUEUE=$(required_version kueue sigs.k8s.io/kueue)
SEAWEEDFS=$(required_version seaweedfs github.com/seaweedfs/seaweedfs)
PAUSE_KEY="pause-$(sha256sum "$tools/pause/main.go" | cut -c1-12)"

k8s_minor=${K8S#v1.}; k8s_minor=${k8s_minor%%.*}
P=k8s.io/component-base/version
C=k8s.io/client-go/pkg/version
K8S_LDFLAGS="-s -w -X $P.gitVersion=$K8S -X $P.gitMajor=1 -X $P.gitMinor=$k8s_minor \
 -X $P.gitTreeState=clean -X $P.buildDate=1970-01-01T00:00:00Z \
 -X $C.gitVersion=$K8S -X $C.gitMajor=1 -X $C.gitMinor=$k8s_minor"
# helm reports the Kubernetes version it was built against to `helm template` and `helm lint`
# (.Capabilities.KubeVersion, the chart's kubeVersion check) when no cluster is asked; without these
# flags a `go build` reports v1.20 and offline rendering of a chart wanting >= 1.30 fails.
# helm's own Makefile takes the version from its k8s.io/client-go (v0.X.Y -> 1.X).
CLIENT_GO=$(required_version helm k8s.io/client-go)
helm_k8s_minor=${CLIENT_GO#v0.}; helm_k8s_minor=${helm_k8s_minor%%.*}
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  HELM_LDFLAGS="$HELM_LDFLAGS -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
# The key names the Kubernetes version too: a helm built without it is never reused.
HELM_KEY="helm-$HELM-k8s1.$helm_k8s_minor"

export CGO_ENABLED=0 GOFLAGS=-mod=mod

build() { # wrapper-dir cache-key binary-name package ldflags
  local dir=$1 key=$2 name=$3 pkg=$4 ldflags=$5
  local out="$cache/$key/bin"
  if [ -x "$out/$name" ]; then
    echo "build-tools: $name ($key) cached at $out/$name" >&2
    return 0
  fi
  mkdir -p "$out"
  # One build of a key at a time: a second run waits here, then finds the binary built.
  local lock
  exec {lock}>"$cache/$key.lock"
  if ! flock -n "$lock"; then
    echo "build-tools: waiting for another build of $key" >&2
    flock "$lock"
  fi
  if [ -x "$out/$name" ]; then
    exec {lock}>&-
    echo "build-tools: $name ($key) built meanwhile at $out/$name" >&2
    return 0
  fi
  echo "build-tools: building $name ($key); a cold build takes minutes" >&2
  local start=$SECONDS
  # Say something every 20 s: a cold Kubernetes build is minutes of silence otherwise. The loop
  # holds neither the lock nor, once told to stop, a sleeping child (which would keep the lock and
  # the caller's pipes open for up to 20 s more).
  (
    exec {lock}>&-
    nap=""
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 20 & nap=$!
      wait "$nap"
      echo "build-tools: still building $name ($((SECONDS - start)) s)" >&2
    done
  ) &
  local heartbeat=$!
  # A temporary name of this build's own: two builds at once must not share one.
  local tmp
  tmp=$(mktemp "$out/.$name.tmp.XXXXXX")
  local status=0
  (cd "$tools/$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") || status=$?
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    rm -f "$tmp"
    exec {lock}>&-
    echo "build-tools: building $name failed (go build exit $status)" >&2
    return "$status"
  fi
  chmod 755 "$tmp"
  mv -f "$tmp" "$out/$name"
  exec {lock}>&-
  echo "build-tools: built $name in $((SECONDS - start)) s" >&2
}

build etcd "etcd-$ETCD" etcd go.etcd.io/etcd/server/v3 "-s -w"
build kwok "kwok-$KWOK" kwok sigs.k8s.io/kwok/cmd/kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK"
build helm "$HELM_KEY" helm helm.sh/helm/v3/cmd/helm "$HELM_LDFLAGS"
for cmd in kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  build kubernetes "kubernetes-$K8S" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$K8S_LDFLAGS"
done
# The real node's runtime. Its graph drivers that need cgo (btrfs, devmapper, zfs) are left out:
# the node uses overlayfs.
CONTAINERD_LDFLAGS="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD"
for cmd in containerd containerd-shim-runc-v2 ctr; do
  GOFLAGS="$GOFLAGS -tags=no_btrfs,no_devmapper,no_zfs" \
    build containerd "containerd-$CONTAINERD" "$cmd" "github.com/containerd/containerd/v2/cmd/$cmd" "$CONTAINERD_LDFLAGS"
done
build pause "$PAUSE_KEY" pause . "-s -w"
build kueue "kueue-$KUEUE" kueue sigs.k8s.io/kueue/cmd/kueue \
  "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE -X sigs.k8s.io/kueue/pkg/version.BuildDate=1970-01-01"
# Kueue's CRDs and webhook definitions come from the same module (tests/cluster/kueue.py applies them).
kueue_config="$cache/kueue-$KUEUE/config"
if [ ! -f "$kueue_config/webhooks.yaml" ]; then
  kueue_src=$(cd "$tools/kueue" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  staged=$(mktemp -d "$cache/kueue-$KUEUE/.config.XXXXXX")
  mkdir "$staged/crds"
  cp "$kueue_src"/config/components/crd/bases/*.yaml "$staged/crds/"
  cp "$kueue_src/config/components/webhook/manifests.yaml" "$staged/webhooks.yaml"
  chmod -R u+w "$staged"
  # A rename: a second run at once finds it complete, or keeps the first one's and drops its own.
  mv -T "$staged" "$kueue_config" 2>/dev/null || rm -rf "$staged"
fi

# The tests' S3 server (tests/cluster/s3server.py).
build seaweedfs "seaweedfs-$SEAWEEDFS" weed github.com/seaweedfs/seaweedfs/weed "-s -w"

# kwok's stage definitions ship in its module zip; the launcher reads our own
# stages (stages.yaml beside this script), so nothing else is needed from it.
for key in "etcd-$ETCD" "kwok-$KWOK" "$HELM_KEY" "kubernetes-$K8S" "containerd-$CONTAINERD" "$PAUSE_KEY" "kueue-$KUEUE" "seaweedfs-$SEAWEEDFS"; do
  echo "$cache/$key/bin"
done
