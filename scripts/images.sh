#!/usr/bin/env bash
# Builds the container images a local node runs, from Debian packages installed on this machine, without a
# container engine and without pulling anything:
#   pause            the pod sandbox: the `pause` binary that `scripts/provision.sh --with-node` compiles;
#   web              nginx from Debian's package, with the contract of the default web image: user 101, port
#                    8080, pid and temporary files under /tmp, documents in /usr/share/nginx/html, server blocks
#                    in /etc/nginx/conf.d;
#   git-sync-standin TEST ONLY: a stand-in for git-sync v4 (tests/images/git-sync-standin), on Debian's git and
#                    busybox-static. The real git-sync is not in any registry this machine reaches. The same
#                    image runs `git daemon` for the tests' git server.
#
# Each image is a docker-archive tarball (one layer) that `ctr images import` reads. Its tag is the digest of its
# content, so a tarball is reused while its inputs are unchanged, and a changed input gets a new name.
#
# Usage: scripts/images.sh [PAUSE_BINARY]
# Prints, on its last line of stdout, the path of an env file naming each tarball and image:
#   PAUSE_IMAGE=… PAUSE_TARBALL=… WEB_IMAGE=… WEB_TARBALL=… GIT_SYNC_IMAGE=… GIT_SYNC_TARBALL=…
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR=${WEBSITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/website-operator}
OUT=$CACHE_DIR/images
REGISTRY=website.local

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

pause_bin=${1:-${KUBEBUILDER_ASSETS:+$KUBEBUILDER_ASSETS/pause}}
pause_bin=${pause_bin:-$CACHE_DIR/assets/pause}
[ -x "$pause_bin" ] || die "no pause binary at $pause_bin: run scripts/provision.sh --with-node first"
for f in /usr/sbin/nginx /etc/nginx/mime.types /usr/bin/git /usr/lib/git-core/git-daemon /bin/busybox; do
  [ -e "$f" ] || die "$f is missing: run scripts/provision.sh --with-node (it installs nginx-light, git, busybox-static)"
done
command -v sha256sum >/dev/null && command -v ldd >/dev/null || die "sha256sum and ldd are needed"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

# Copies each binary, and every shared library it loads, to the same path under root $1.
add_binaries() {
  local root=$1; shift
  local f lib libs
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    [ -e "$root$f" ] || cp -a "$f" "$root$f"
    libs=$(ldd "$f" 2>/dev/null) || die "ldd $f failed"
    if grep -q 'not found' <<<"$libs"; then die "$f needs libraries that are not installed: $(grep 'not found' <<<"$libs" | xargs)"; fi
    for lib in $(awk '/=> \// { print $3 } /^\t\// { print $1 }' <<<"$libs"); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

base_files() {
  local root=$1
  mkdir -p "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/run"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\ngit-sync:x:65533:65533:git-sync:/tmp:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnginx:x:101:\ngit-sync:x:65533:\nnogroup:x:65534:\n' >"$root/etc/group"
}

# Writes the docker-archive tarball of image $1 from rootfs $2 and config fragment $3 (JSON of the image's
# `config`), and appends its name and path to the env file.
package() {
  local name=$1 root=$2 config=$3 var=$4
  local layer=$work/$name-layer.tar
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$root" -cf "$layer" .
  local layer_digest
  layer_digest=$(sha256sum "$layer" | cut -d' ' -f1)
  local config_json
  config_json=$(printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/images.sh %s"}]}' \
    "$config" "$layer_digest" "$name")
  local config_digest
  config_digest=$(printf '%s' "$config_json" | sha256sum | cut -d' ' -f1)
  local image=$REGISTRY/$name:${config_digest:0:16}
  local tarball=$OUT/$name-${config_digest:0:16}.tar
  if [ -f "$tarball" ]; then
    log "$image: unchanged, $tarball"
  else
    local dir=$work/$name-archive
    mkdir -p "$dir/$layer_digest"
    mv "$layer" "$dir/$layer_digest/layer.tar"
    printf '%s' "$config_json" >"$dir/$config_digest.json"
    printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
      "$config_digest" "$image" "$layer_digest" >"$dir/manifest.json"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    # Older builds of the same image are of no further use.
    find "$OUT" -maxdepth 1 -name "$name-*.tar" ! -name "$(basename "$tarball")" -delete
    log "$image: built, $(du -h "$tarball" | cut -f1) in $tarball"
  fi
  printf '%s_IMAGE=%s\n%s_TARBALL=%s\n' "$var" "$image" "$var" "$tarball" >>"$work/images.env"
}

: >"$work/images.env"

# pause
root=$work/pause
mkdir -p "$root"
cp "$pause_bin" "$root/pause"
chmod 755 "$root/pause"
package pause "$root" '{"Entrypoint":["/pause"],"User":"65535"}' PAUSE

# web: Debian's nginx. No `user` directive: it runs as the pod's user (101). Everything it writes is under /tmp.
root=$work/web
base_files "$root"
add_binaries "$root" /usr/sbin/nginx
mkdir -p "$root/etc/nginx/conf.d" "$root/usr/share/nginx/html" "$root/var/log/nginx"
cp /etc/nginx/mime.types "$root/etc/nginx/mime.types"
cat >"$root/etc/nginx/nginx.conf" <<'EOF'
# The web image of the local node (scripts/images.sh): Debian's nginx with the contract of nginx-unprivileged.
worker_processes 1;
error_log stderr notice;
pid /tmp/nginx.pid;
events {
    worker_connections 512;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    include /etc/nginx/conf.d/*.conf;
}
EOF
cat >"$root/etc/nginx/conf.d/default.conf" <<'EOF'
server {
    listen 8080;
    root /usr/share/nginx/html;
}
EOF
printf '<!doctype html><title>nginx</title><p>The web image of the local node.</p>\n' >"$root/usr/share/nginx/html/index.html"
package web "$root" '{"Entrypoint":["/usr/sbin/nginx","-g","daemon off;"],"User":"101","ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"}' WEB

# git-sync-standin: busybox for the shell and its tools, Debian's git (with git-core, for git daemon and the
# http(s) helpers), and the stand-in script.
root=$work/git-sync-standin
base_files "$root"
mkdir -p "$root/bin" "$root/usr/lib"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
add_binaries "$root" /usr/bin/git
cp -a /usr/lib/git-core "$root/usr/lib/git-core"
add_binaries "$root" /usr/lib/git-core/git-daemon /usr/lib/git-core/git-remote-http
[ -d /usr/share/git-core/templates ] && mkdir -p "$root/usr/share/git-core" && cp -a /usr/share/git-core/templates "$root/usr/share/git-core/"
# The CA bundle, for https:// repositories.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
install -m 755 tests/images/git-sync-standin "$root/git-sync"
package git-sync-standin "$root" '{"Entrypoint":["/git-sync"],"User":"65533","Env":["PATH=/usr/bin:/bin:/usr/lib/git-core","HOME=/tmp"],"WorkingDir":"/tmp"}' GIT_SYNC

install -m 644 "$work/images.env" "$OUT/images.env"
log "images ready; their names and tarballs are in $OUT/images.env"
printf '%s\n' "$OUT/images.env"
