# test/lib/evrep10.sh -- a build of an earlier evrep release (by default the
# released 1.0, commit f77a8fc) beside the current one, for the upgrade and
# mixed-version tests (test/t/52_upgrade.t, 53_mixed_versions.t). Source it.
#
# PostgreSQL 15 loads one library named evrep per install, so the old build
# goes into a relocated copy of the PostgreSQL install (the layout of
# /work/spec/pgcopy.sh: /usr/lib/postgresql/15, /usr/share/postgresql/15 and
# /usr/include/postgresql copied under one prefix; pg_config, postgres and
# PGXS find their directories relative to the binaries, so the copy works
# where it lies). The source is `git archive COMMIT` of this repository.
#
#   evrep_old_pg_config [COMMIT]
#       print the pg_config of a PostgreSQL copy holding evrep built from
#       COMMIT (default $EVREP_OLD_COMMIT, f77a8fc); builds it the first time
#       (about 20 s), then reuses it from the cache. Start a node on it with
#       topology.sh's `node ... pg_config=PATH` (or PG_CONFIG=PATH pg_init).
#       0 on success; on failure the build's log tail on stderr, 1.
#
# Cache: $EVREP_OLD_BUILD_DIR (default /tmp/evrep-1.0-build)/<full commit>/
# with pg/ (the copy), src/ (the sources), build.log and a stamp file "ok"
# written last; a build without the stamp is redone. A lock file (flock)
# serialises concurrent builders of the same commit. Nothing outside the
# cache directory is written; the system install is never touched.

[[ -n "${_EVREP_EVREP10_SH:-}" ]] && return 0
_EVREP_EVREP10_SH=1

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${EVREP_OLD_COMMIT:=f77a8fc}"
: "${EVREP_OLD_BUILD_DIR:=/tmp/evrep-1.0-build}"
_EVREP10_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_EVREP10_SYS_PG=/usr/lib/postgresql/15

# _evrep10_build COMMIT DIR -- the copy and the build (under the lock)
_evrep10_build() {
    local commit=$1 dir=$2 pgc
    rm -rf "$dir/pg" "$dir/src" "$dir/ok"
    mkdir -p "$dir/pg/lib/postgresql" "$dir/pg/share/postgresql" "$dir/pg/include" "$dir/src" || return 1
    cp -a "$_EVREP10_SYS_PG" "$dir/pg/lib/postgresql/" \
        && cp -a /usr/share/postgresql/15 "$dir/pg/share/postgresql/" \
        && cp -a /usr/include/postgresql "$dir/pg/include/" || return 1
    # an evrep the copy inherited from the system install is not the one we build
    rm -f "$dir/pg/lib/postgresql/15/lib/evrep.so" "$dir/pg/share/postgresql/15/extension"/evrep[.-]*
    pgc=$dir/pg/lib/postgresql/15/bin/pg_config
    [[ "$("$pgc" --pkglibdir)" == "$dir/pg/lib/postgresql/15/lib" ]] \
        || { echo "the copy's pg_config does not point into the copy: $("$pgc" --pkglibdir)"; return 1; }
    git -C "$_EVREP10_ROOT" archive --format=tar "$commit" | tar -C "$dir/src" -xf - || return 1
    make -C "$dir/src" -j"$(nproc)" PG_CONFIG="$pgc" && make -C "$dir/src" PG_CONFIG="$pgc" install || return 1
    [[ -e "$("$pgc" --pkglibdir)/evrep.so" ]] || { echo "no evrep.so after make install"; return 1; }
    echo "$commit" >"$dir/ok"
}

evrep_old_pg_config() {
    local commit=${1:-$EVREP_OLD_COMMIT} full dir rc
    full=$(git -C "$_EVREP10_ROOT" rev-parse --verify -q "$commit^{commit}") \
        || { evrep_err "evrep10: no commit '$commit' in $_EVREP10_ROOT"; return 1; }
    dir=$EVREP_OLD_BUILD_DIR/$full
    mkdir -p "$dir" && chmod 755 "$EVREP_OLD_BUILD_DIR" "$dir" || { evrep_err "evrep10: cannot create $dir"; return 1; }
    (
        flock -w 600 9 || { echo "evrep10: lock $dir/lock not obtained in 600 s" >&2; exit 1; }
        [[ -s "$dir/ok" ]] && exit 0
        evrep_log "evrep10: building evrep ${full:0:10} into a PostgreSQL copy under $dir"
        _evrep10_build "$full" "$dir" >"$dir/build.log" 2>&1
    ) 9>"$dir/lock"
    rc=$?
    if (( rc != 0 )) || [[ ! -s "$dir/ok" ]]; then
        evrep_err "evrep10: the build of ${full:0:10} failed"; evrep_tail "$dir/build.log" 30; return 1
    fi
    # the postgres user runs the servers from the copy: every parent must be traversable
    printf '%s\n' "$dir/pg/lib/postgresql/15/bin/pg_config"
}
