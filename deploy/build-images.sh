#!/usr/bin/env bash
# Build every image of deploy/Dockerfile, tagged as docker-compose.yml names them:
#   ${ZG_IMAGE_PREFIX:-zerogate}/<target>:${ZG_IMAGE_TAG:-latest}
# Usage: deploy/build-images.sh [TARGET...]   (default: all of them)
# Environment:
#   DOCKER        the docker command line (default: docker), e.g. "docker -H unix:///x.sock"
#   ZG_CA_BUNDLE  CA bundle for pip where TLS is intercepted, passed as the build secret
#                 "ca_bundle" (default: /etc/ssl/certs/ca-certificates.crt when present;
#                 set it empty to pass none)
#   ZG_BUILD_NETWORK  network of the build's RUN steps (default: the daemon's default)
# Run from anywhere; the build context is the repository root (see .dockerignore).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a docker <<<"${DOCKER:-docker}"
prefix="${ZG_IMAGE_PREFIX:-zerogate}"
tag="${ZG_IMAGE_TAG:-latest}"
ca="${ZG_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(api signaling relay registry gateway client sample-resource)

args=(-f deploy/Dockerfile)
[ -n "$ca" ] && [ -s "$ca" ] && args+=(--secret "id=ca_bundle,src=$ca")
[ -n "${ZG_BUILD_NETWORK:-}" ] && args+=(--network "$ZG_BUILD_NETWORK")
for target in "${targets[@]}"; do
  echo "build-images: $prefix/$target:$tag"
  DOCKER_BUILDKIT=1 "${docker[@]}" build "${args[@]}" --target "$target" \
    -t "$prefix/$target:$tag" .
done
