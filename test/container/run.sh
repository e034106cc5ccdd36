#!/usr/bin/env bash
# npm run test:container: the whole suite against the container of test/container/Dockerfile,
# with no fallback (SPECTRUM_TEST_CONTAINER=1): any error reaching the engine, building the
# image or starting the container fails the run. Needs a running Docker engine. The base image
# comes from the engine when it has it, else from a pull, else from Debian packages
# (base-image.sh, as root), for an engine that cannot pull.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
  echo "test:container: no Docker engine answers (docker info failed): start one first" >&2
  exit 1
fi
base=debian:bookworm-slim
if ! docker image inspect "$base" >/dev/null 2>&1; then
  docker pull -q "$base" >/dev/null 2>&1 || test/container/base-image.sh
fi
SPECTRUM_TEST_CONTAINER=1 exec npm test
