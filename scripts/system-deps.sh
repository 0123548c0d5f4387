#!/usr/bin/env bash
# Installs the distribution packages some tests drive for real: PostgreSQL (the state store on
# loopback) and Chromium (the web console's browser tests). Idempotent: does nothing when both
# are present. Needs root (CI and the development machine run as root) and Debian's apt.
set -euo pipefail

need=()
# PostgreSQL's server binaries live under /usr/lib/postgresql/<version>/bin on Debian.
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  need+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: please install ${need[*]} (the PostgreSQL and browser tests drive them)" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
