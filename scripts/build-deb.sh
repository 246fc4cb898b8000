#!/usr/bin/env bash
# Build the Debian package postgresql-15-evrep (debian/, built with
# pg_buildext as Debian builds its postgresql-NN-* extension packages).
#
#   scripts/build-deb.sh [--force]        (or: make deb)
#
# Installs the build dependencies with apt when some are missing (as root),
# copies the tree's files (git's tracked and untracked-but-not-ignored ones:
# what you see, committed or not) to build/deb/work/, makes the upstream
# tarball evrep_VERSION.orig.tar.gz from them without debian/, and runs
# `dpkg-buildpackage -us -uc` there: source package and binary package, with
# the build-time check in debian/rules (a throw-away cluster through
# pg_virtualenv: CREATE EXTENSION and the 1.0 -> 1.1 update with the packaged
# files). DEB_BUILD_OPTIONS=nocheck skips that check.
#
# Results in build/deb/: postgresql-15-evrep_VERSION_ARCH.deb, the source
# package (.dsc, .orig.tar.gz, .debian.tar.xz), .buildinfo, .changes and
# build.log. A rebuild is skipped when the files are unchanged since the last
# successful build (build/deb/SOURCE_HASH); --force rebuilds anyway.
# The last line printed is the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/deb
force=0
[[ "${1:-}" == --force ]] && force=1

log() { printf 'build-deb: %s\n' "$*"; }
die() { printf 'build-deb: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

# the files of the tree, NUL-separated, sorted (build/ is ignored by git)
tree_files() {
    if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z --cached --others --exclude-standard | sort -zu |
            while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done
    else
        find . -path ./build -prune -o -path ./.git -prune -o -type f -printf '%P\0' | sort -z
    fi
}

hash=$(tree_files | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)
shopt -s nullglob
debs=("$OUT"/postgresql-*-evrep_*.deb)
shopt -u nullglob
if (( !force )) && (( ${#debs[@]} == 1 )) && [[ "$(cat "$OUT/SOURCE_HASH" 2>/dev/null)" == "$hash" ]]; then
    log "up to date (files unchanged since the last build, $hash)"
    echo "${debs[0]}"
    exit 0
fi

# ---- build dependencies ------------------------------------------------------
need=(dpkg-dev debhelper)
missing=()
for p in "${need[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done

policy=/usr/sbin/policy-rc.d
apt_install() {   # apt_install apt-get-args... -- deny service starts meanwhile
    (( EUID == 0 )) || die "must run as root to install: $* (or install them yourself)"
    local made=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "${_apt_updated:-}" ]]; then apt-get update -q; _apt_updated=1; fi
    apt-get -y -q --no-install-recommends "$@" || { (( made )) && rm -f "$policy"; return 1; }
    (( made )) && rm -f "$policy"
    return 0
}
if (( ${#missing[@]} )); then
    log "installing ${missing[*]}"
    apt_install install "${missing[@]}"
fi

# ---- staging -------------------------------------------------------------------
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
upstream=${version%-*}
work=$OUT/work
rm -rf "$work"
mkdir -p "$work/evrep-$upstream"
tree_files | tar -C "$ROOT" --null -T - -cf - | tar -C "$work/evrep-$upstream" -xf -
# the upstream tarball: everything but debian/
tar -C "$work" --exclude="evrep-$upstream/debian" --sort=name --owner=0 --group=0 \
    --mtime="@$(dpkg-parsechangelog -l debian/changelog -S Timestamp)" \
    -czf "$work/evrep_$upstream.orig.tar.gz" "evrep-$upstream"

cd "$work/evrep-$upstream"
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    log "installing the build dependencies of debian/control: $(dpkg-checkbuilddeps 2>&1 | sed 's/.*: //')"
    apt_install build-dep "$PWD"
fi

log "dpkg-buildpackage in $work/evrep-$upstream (log: $OUT/build.log)"
if ! dpkg-buildpackage -us -uc >"$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log" >&2
    die "dpkg-buildpackage failed (whole log: $OUT/build.log)"
fi

# ---- results -------------------------------------------------------------------
cd "$work"
rm -f "$OUT"/*.deb "$OUT"/*.dsc "$OUT"/*.tar.* "$OUT"/*.buildinfo "$OUT"/*.changes "$OUT/SOURCE_HASH"
mv ./*.deb ./*.dsc ./*.tar.* ./*.buildinfo ./*.changes "$OUT"/
rm -rf "$work"
echo "$hash" >"$OUT/SOURCE_HASH"
shopt -s nullglob
debs=("$OUT"/postgresql-*-evrep_*.deb)
(( ${#debs[@]} == 1 )) || die "expected one .deb in $OUT, found ${#debs[@]}"
log "built $(basename "${debs[0]}") and the source package in build/deb/"
echo "${debs[0]}"
