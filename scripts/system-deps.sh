#!/usr/bin/env bash
# Installs the distribution packages some tests drive for real: PostgreSQL (the state store on
# loopback), Chromium (the web console's browser tests) and Node.js with npm (the TypeScript
# SDK's build and tests). Idempotent: does nothing when all are present. Needs root (CI and the development machine run as root) and Debian's apt.
set -euo pipefail

need=()
# PostgreSQL's server binaries live under /usr/lib/postgresql/<version>/bin on Debian.
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  need+=(postgresql)
fi
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
# The machines of this project come with Node.js 20 and npm; a bare Debian gets its own packages.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need+=(nodejs npm)
fi
# The TypeScript SDK needs Node.js 20 or newer (package.json "engines"); an older one fails its
# tests in ways that do not say why, so say it here.
check_node() {
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if [ "$major" -lt 20 ]; then
    echo "system-deps: Node.js $(node --version 2>/dev/null || echo '(none)') is too old: the TypeScript SDK needs 20 or newer (Debian 13 ships 20; on Debian 12 install Node 20 from nodejs.org or NodeSource)" >&2
    exit 1
  fi
}
if [ ${#need[@]} -eq 0 ]; then
  check_node
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: please install ${need[*]} (the PostgreSQL, browser and TypeScript SDK tests drive them)" >&2
  exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
check_node
