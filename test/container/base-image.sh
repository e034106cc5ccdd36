#!/usr/bin/env bash
# Builds debian:bookworm-slim, the image test/container/Dockerfile starts FROM, out of Debian
# packages, for a Docker engine that cannot pull images (no registry access, only the Debian
# mirror). A Docker engine that can pull never needs it. Usage, as root with a running engine:
#   test/container/base-image.sh            # builds it unless the engine already has it
#   test/container/base-image.sh --force    # builds it again
# The mirrors are the ones apt is configured with on this machine (bookworm, -updates and
# -security), so the image installs the same package versions as the local cluster.
set -euo pipefail

tag=debian:bookworm-slim
if [ "${1:-}" != --force ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag: already in the Docker engine"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "base-image.sh: debootstrap needs root (run it with sudo)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "base-image.sh: debootstrap is missing: apt-get install -y debootstrap" >&2
  exit 1
fi

# "URI suite" of every Debian bookworm source apt knows, e.g. ".../debian/ bookworm-updates".
sources=$(apt-get indextargets --format '$(TARGET_OF) $(REPO_URI) $(RELEASE)' |
  awk '$1 == "deb" && $3 ~ /^bookworm(-updates|-security)?$/ { print $2, $3 }' | sort -u)
mirror=$(awk '$2 == "bookworm" { print $1; exit }' <<<"$sources")
if [ -z "$mirror" ]; then
  echo "base-image.sh: apt has no Debian bookworm source to build from (see /etc/apt/sources.list*)" >&2
  exit 1
fi

root=$(mktemp -d /var/tmp/spectrum-base-XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# As the published slim image: every bookworm suite configured, no manuals or documentation
# installed by later packages, no package lists or downloaded archives left in the layer.
awk '{ print "deb", $1, $2, "main" }' <<<"$sources" >"$root/etc/apt/sources.list"
cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb

tar -C "$root" --numeric-owner -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "$tag: built from Debian packages ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
