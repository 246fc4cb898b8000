#!/usr/bin/env bash
# Install the Debian 12 packages evrep needs to build and test.
# Idempotent: checks with dpkg-query and only runs apt-get (update once, then
# install) when something is missing. Never starts services.
#
#   scripts/install-deps.sh [EXTRA_PACKAGE...]
#
# Env: EVREP_EXTRA_PACKAGES (space-separated, added to the list).
set -euo pipefail

PACKAGES=(
    make gcc pkg-config
    postgresql-15 postgresql-server-dev-15
    rabbitmq-server
    librabbitmq-dev amqp-tools
    thrift-compiler libthrift-c-glib-dev libglib2.0-dev
    libssl-dev openssl        # openssl: test certificates (test/lib/tls.sh)
    libipc-run-perl perl      # prove, PostgreSQL's TAP modules
    procps                    # pgrep (test/lib/pg.sh)
    gnuplot-nox
)
# shellcheck disable=SC2206
PACKAGES+=(${EVREP_EXTRA_PACKAGES:-} "$@")

installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
    echo "install-deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if (( EUID != 0 )); then
    echo "install-deps: ERROR: must run as root to install them (or install them yourself)" >&2
    exit 1
fi

# Make sure package scripts cannot start services (no systemd here anyway):
# a policy-rc.d that denies everything, removed again if we created it.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    echo "install-deps: installing temporary $policy (deny service starts)"
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"; echo "install-deps: removed temporary $policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
apt-get update -q
echo "install-deps: apt-get install -y --no-install-recommends ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

still=()
for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
if (( ${#still[@]} )); then
    echo "install-deps: ERROR: still not installed: ${still[*]}" >&2
    exit 1
fi
echo "install-deps: done"
