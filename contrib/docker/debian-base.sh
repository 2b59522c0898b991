#!/bin/sh
# A base image for the Dockerfile made from Debian's own packages, for a machine that reaches
# a Debian mirror and PyPI but not Docker Hub (a closed network, a CI machine):
#
#   sudo contrib/docker/debian-base.sh blocking-probe-base:bookworm
#   docker build --network host --build-arg BASE=blocking-probe-base:bookworm -t blocking-probe .
#
# Debian 12 (bookworm) with its Python 3.11, venv and CA certificates, nothing else
# (debootstrap's minbase). The image takes this machine's pip settings (/etc/pip.conf,
# /etc/xdg/pip/) and CA bundle, so that pip inside the build reaches PyPI as pip here does
# (an index mirror, a proxy with its own CA); build with --network host for the same reason.
# Needs root, debootstrap and a running Docker engine. DEBIAN_MIRROR names another mirror.
set -eu

tag=${1:-blocking-probe-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/probe-base.XXXXXX)
trap 'rm -rf -- "$root"' EXIT INT TERM

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 -- "$root.log" >&2
    echo "debian-base.sh: debootstrap failed (the whole log: $root.log)" >&2
    exit 1
}
rm -f -- "$root.log"
if [ -f /etc/pip.conf ]; then cp -- /etc/pip.conf "$root/etc/pip.conf"; fi
if [ -d /etc/xdg/pip ]; then mkdir -p -- "$root/etc/xdg" && cp -R -- /etc/xdg/pip "$root/etc/xdg/"; fi
# This machine's CA bundle, which may hold a proxy's CA that Debian's does not.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp -- /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf -- "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "$tag"
