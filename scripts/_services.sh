#!/usr/bin/env bash
# Debian packages the service-backed tests use; installed when missing, as root only.
# Each test checks for its tool and skips with a reason when it is absent.
set -uo pipefail
# command-to-check=package
wanted=(
  "docker-registry=docker-registry"
  "softhsm2-util=softhsm2"
  "pkcs11-tool=opensc"
  "redis-server=redis-server"
  "pg_ctlcluster=postgresql"
  "chromium=chromium"
)
missing=()
for pair in "${wanted[@]}"; do
  cmd=${pair%%=*}; pkg=${pair#*=}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "not root or not Debian: tests needing ${missing[*]} will skip" >&2
  exit 0
fi
echo "installing ${missing[*]} (Debian) for the service tests..." >&2
export DEBIAN_FRONTEND=noninteractive
{ timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}" ||
  { timeout 300 apt-get update -q &&
    timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"; }; } \
  >/tmp/mlverify-apt.log 2>&1 ||
  echo "some of ${missing[*]} could not be installed (see /tmp/mlverify-apt.log): their tests skip" >&2
exit 0
