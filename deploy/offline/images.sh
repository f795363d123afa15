#!/usr/bin/env bash
# Images the compose stack needs, made offline from Debian's packages, for
# machines that cannot pull from a container registry (CI, the lab):
#
#   images.sh base      debootstrap Debian bookworm (minbase) and `docker import`
#                       it as debian:bookworm-slim, the FROM of deploy/Dockerfile
#   images.sh nats      nats-server (Debian package) tagged as $ZG_NATS_IMAGE
#   images.sh postgres  postgresql (Debian package) tagged as $ZG_POSTGRES_IMAGE
#   images.sh all       the three, each skipped when its tag already exists
#
# On a machine that can pull, none of this is needed: compose pulls the official
# images of the same names. Environment:
#   DOCKER            docker command line to use (default: docker), e.g. "docker -H unix:///x.sock"
#   ZG_IMAGE_CACHE    where the debootstrapped root file system is kept as a tarball
#                     (default: .zerogate/compose/cache), so a new data root imports it in seconds
#   ZG_DEBIAN_MIRROR  default http://deb.debian.org/debian
#   ZG_CA_BUNDLE      CA bundle handed to builds as the secret "ca_bundle" where TLS is
#                     intercepted (default: /etc/ssl/certs/ca-certificates.crt when present)
# The official images' interfaces are kept: nats-server's flags as the command,
# POSTGRES_PASSWORD[_FILE]/POSTGRES_USER/POSTGRES_DB, /var/lib/postgresql/data, pg_isready.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
read -r -a docker <<<"${DOCKER:-docker}"
cache="${ZG_IMAGE_CACHE:-.zerogate/compose/cache}"
mirror="${ZG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
base_tag="debian:bookworm-slim"
nats_tag="${ZG_NATS_IMAGE:-nats:2.9-alpine}"
postgres_tag="${ZG_POSTGRES_IMAGE:-postgres:15}"

have() { "${docker[@]}" image inspect "$1" >/dev/null 2>&1; }

build() { # build TAG DIR: a BuildKit build with the CA bundle as a secret
  local tag="$1" dir="$2" ca="${ZG_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
  local secret=()
  [ -s "$ca" ] && secret=(--secret "id=ca_bundle,src=$ca")
  DOCKER_BUILDKIT=1 "${docker[@]}" build --network host "${secret[@]}" \
    --build-arg "BASE=$base_tag" -t "$tag" "$dir"
}

base() {
  if have "$base_tag"; then echo "images: $base_tag present"; return; fi
  mkdir -p "$cache"
  local tarball="$cache/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "images: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "${root:-/nonexistent}"' EXIT
    echo "images: debootstrap bookworm into $root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
    # Like the official slim image: apt sources for updates and security, no
    # documentation, no apt caches, no machine id (each container gets its own).
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
      "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    : >"$root/etc/resolv.conf"
    echo localhost >"$root/etc/hostname"
    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  echo "images: import $tarball as $base_tag"
  "${docker[@]}" import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$base_tag" >/dev/null
}

nats() {
  if have "$nats_tag"; then echo "images: $nats_tag present"; return; fi
  base
  build "$nats_tag" "$here/nats"
}

postgres() {
  if have "$postgres_tag"; then echo "images: $postgres_tag present"; return; fi
  base
  build "$postgres_tag" "$here/postgres"
}

case "${1:-all}" in
  base) base ;;
  nats) nats ;;
  postgres) postgres ;;
  all) base; nats; postgres ;;
  *) echo "usage: $0 [base|nats|postgres|all]" >&2; exit 2 ;;
esac
