#!/usr/bin/env bash
# Install what tests/test_docker.py needs to build README's Dockerfile for
# real: podman, the runc runtime (crun refuses to start containers under
# hybrid cgroups) and debootstrap (the base image is made locally: no image
# registry is needed). Idempotent: does nothing when all three are there.
# Debian or Ubuntu, as root. CI (.ci/run) gets here through the test, with
# CONVLSTM_PATCH_REQUIRE_PODMAN=1.
set -euo pipefail
packages=(podman runc debootstrap)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "needs root and apt-get to install: ${missing[*]}" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
