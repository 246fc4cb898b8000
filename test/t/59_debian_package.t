#!/usr/bin/env bash
# 59_debian_package: the Debian package postgresql-15-evrep (debian/, built
# by scripts/build-deb.sh with pg_buildext) installed with apt gives a
# working evrep on a new cluster, using only what the package put on the
# machine.
#
#   1. scripts/build-deb.sh builds the package (or reuses build/deb/ when the
#      tree's files are unchanged since its last build).
#   2. The files `make install` put into the PostgreSQL 15 directories
#      (evrep.so, its bitcode, evrep.control, evrep--*.sql) are saved to a
#      tar file and removed; `apt-get install ./postgresql-15-evrep_*.deb`
#      puts the package's in their place; dpkg -L lists them and dpkg
#      --verify finds them as packaged.
#   3. A new cluster (as user postgres, test/lib/pg.sh) with
#      shared_preload_libraries = 'evrep': the postmaster maps the packaged
#      evrep.so; CREATE EXTENSION evrep gives 1.1; in a second database
#      CREATE EXTENSION evrep VERSION '1.0' then ALTER EXTENSION evrep UPDATE
#      gives 1.1 with the packaged update script.
#   4. dpkg -r removes the package and its files; the saved make-install
#      files are put back at once and compared with what was saved.
#
# CAUTION: this test changes the system PostgreSQL 15 install that the other
# tests (and other people's runs) use. The evrep files are missing only while
# apt-get installs the local .deb (a few seconds) and between dpkg -r and the
# restore (under a second); in between, the package's build of the same
# tree serves. The restore runs from an EXIT hook too, so a failure or an
# interrupt (not SIGKILL) still puts the files back; the saved copy stays in
# $EVREP_TEST_DIR/t59-make-install.tar until then. Needs root (apt, dpkg).
# Ports: PostgreSQL 6750.
set -uo pipefail
source "$(dirname "$0")/../lib/tap.sh"

(( EUID == 0 )) || plan skip_all "needs root (apt-get install, dpkg -r)"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PKG=postgresql-15-evrep
N=t59pkg
PORT=6750
LIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
SAVED=$EVREP_TEST_DIR/t59-make-install.tar
ARMED=0      # 1 once the make-install files are saved: the EXIT hook restores
RESTORED=0

# must DESC CMD...: ok, and on failure end the test (restoring the files)
must() { ok "$@" && return 0; diag "stopping here: the steps after this one depend on it"; exit 1; }

# the evrep files in the PostgreSQL directories, relative to /
evrep_files() {
    local f
    for f in "$LIBDIR/evrep.so" "$LIBDIR/bitcode/evrep.index.bc" "$LIBDIR/bitcode/evrep" \
             "$SHAREDIR/extension/evrep.control" "$SHAREDIR"/extension/evrep--*.sql; do
        [[ -e "$f" ]] && printf '%s\n' "${f#/}"
    done
}

pkg_installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null)" == installed ]]; }

# Put the make-install files back (idempotent): remove the package if it is
# installed, then unpack the saved tar over /.
restore_install() {
    (( ARMED && !RESTORED )) || return 0
    pkg_installed && dpkg -r "$PKG" >/dev/null
    if [[ -s "$SAVED" ]]; then
        tar -C / -xpf "$SAVED" || { diag "RESTORE FAILED: the make-install files are in $SAVED (tar -C / -xpf $SAVED)"; return 1; }
    fi
    RESTORED=1
}
on_exit 'pg_stop $N immediate >/dev/null 2>&1; restore_install'

# A saved copy left by a run that was killed: put it back if the files are
# still missing, else it is stale.
if [[ -s "$SAVED" ]]; then
    if [[ ! -e "$LIBDIR/evrep.so" ]] && ! pkg_installed; then
        diag "restoring the make-install files a killed run left in $SAVED"
        tar -C / -xpf "$SAVED"
    fi
    rm -f "$SAVED"
fi

# ==== 1. build ================================================================
deb_out=$(mktemp "${TMPDIR:-/tmp}/evrep-t59.XXXXXX")
"$ROOT/scripts/build-deb.sh" >"$deb_out" 2>&1; rc=$?
DEB=$(tail -n 1 "$deb_out")
if (( rc != 0 )); then diag "$(tail -n 30 "$deb_out")"; fi
rm -f "$deb_out"
cmp_ok "$rc" -eq 0 "scripts/build-deb.sh builds the package"
[[ "$DEB" == "$ROOT"/build/deb/${PKG}_*.deb && -s "$DEB" ]] || BAIL_OUT "no .deb (got '$DEB')"
note "package: ${DEB#"$ROOT"/} (build step ${SECONDS}s)"
T0=$SECONDS
is "$(dpkg-deb -f "$DEB" Package) $(dpkg-deb -f "$DEB" Version)" "$PKG 1.1-1" "package name and version"
like "$(dpkg-deb -f "$DEB" Depends)" '(^|, )postgresql-15( |,|$).*librabbitmq4' \
    "Depends: the PostgreSQL 15 server and librabbitmq (from shlibs)"

# ==== 2. replace the make-install files by the package's =======================
mapfile -t before < <(evrep_files)
note "make-install files: ${#before[@]}"
if pkg_installed; then
    diag "$PKG was installed before this test (left over?); it is removed at the end"
fi
if (( ${#before[@]} )); then
    must "save the make-install files" tar -C / -cpf "$SAVED" "${before[@]}"
fi
ARMED=1

export DEBIAN_FRONTEND=noninteractive
t_rm=$EPOCHREALTIME
(( ${#before[@]} )) && (cd / && rm -rf "${before[@]}")
is "$(evrep_files | wc -l)" 0 "no evrep file left in the PostgreSQL directories"
must "apt-get install ./${DEB##*/}" apt-get install -y -q --no-install-recommends "$DEB"
note "files missing for $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t_rm }")s (apt-get install)"
ok "$PKG is installed" pkg_installed

listed=$(dpkg -L "$PKG")
for f in "$LIBDIR/evrep.so" "$SHAREDIR/extension/evrep.control" \
         "$SHAREDIR/extension/evrep--1.0.sql" "$SHAREDIR/extension/evrep--1.0--1.1.sql"; do
    like "$listed" "(^|"$'\n'")$f($|"$'\n'")" "dpkg -L lists $f"
    ok "$f is on disk" test -s "$f"
done
is "$(dpkg --verify "$PKG" 2>&1)" "" "dpkg --verify: the files on disk are the packaged ones"
is "$(evrep_files | sed 's|^|/|' | while read -r f; do [[ -d $f ]] && continue; dpkg -S "$f" >/dev/null 2>&1 || echo "$f"; done)" "" \
   "every evrep file in the PostgreSQL directories belongs to $PKG"

# ==== 3. a new cluster on the packaged files ====================================
must "pg_init $N $PORT (shared_preload_libraries = 'evrep')" pg_init "$N" "$PORT"
is "$(sed -n "s/^shared_preload_libraries = //p" "$(pg_datadir "$N")/postgresql.conf")" "'evrep'" \
   "the cluster preloads evrep"
must "pg_start $N" pg_start "$N"
pm=$(head -n 1 "$(pg_datadir "$N")/postmaster.pid")
like "$(grep -o '/[^ ]*evrep\.so.*' "/proc/$pm/maps" | sort -u)" "^$LIBDIR/evrep\.so$" \
     "the postmaster mapped the packaged $LIBDIR/evrep.so"
ok "CREATE EXTENSION evrep" pg_psql "$N" -c 'CREATE EXTENSION evrep'
is "$(pg_psql "$N" -c "SELECT extversion FROM pg_extension WHERE extname = 'evrep'")" 1.1 "extversion 1.1"
is "$(pg_psql "$N" -c "SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'evrep'")" \
   "1.0,1.1" "the package offers 1.0 and 1.1"
is "$(pg_psql "$N" -c "SELECT count(*) FROM evrep.status")" 0 "evrep.status answers"
like "$(pg_psql "$N" -c "SELECT count(*) FROM evrep.worker_state()")" '^[0-9]+$' "evrep.worker_state() answers (C function from the library)"

ok "CREATE DATABASE upd" pg_psql "$N" -c 'CREATE DATABASE upd'
ok "upd: CREATE EXTENSION evrep VERSION '1.0'" pg_psql "$N" -d upd -c "CREATE EXTENSION evrep VERSION '1.0'"
is "$(pg_psql "$N" -d upd -c "SELECT extversion FROM pg_extension WHERE extname = 'evrep'")" 1.0 "upd: extversion 1.0"
ok "upd: ALTER EXTENSION evrep UPDATE" pg_psql "$N" -d upd -c 'ALTER EXTENSION evrep UPDATE'
is "$(pg_psql "$N" -d upd -c "SELECT extversion FROM pg_extension WHERE extname = 'evrep'")" 1.1 "upd: extversion 1.1 after the update"
is "$(pg_psql "$N" -d upd -c "SELECT to_regclass('evrep.incarnation') IS NOT NULL")" t "upd: the 1.1 catalog (evrep.incarnation) is there"
ok "pg_stop $N" pg_stop "$N"

# ==== 4. remove the package, put the make-install files back ====================
t_rm=$EPOCHREALTIME
ok "dpkg -r $PKG" dpkg -r "$PKG"
left=$(evrep_files)
restore_install; rrc=$?
note "files missing for $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t_rm }")s (dpkg -r to restore)"
is "$left" "" "dpkg -r removed every evrep file it had installed"
ok "$PKG is no longer installed" bash -c "! dpkg-query -W -f='\${db:Status-Status}' $PKG 2>/dev/null | grep -qx installed"
cmp_ok "$rrc" -eq 0 "the make-install files are restored"
if [[ -s "$SAVED" ]]; then
    is "$(tar -C / --compare -f "$SAVED" 2>&1)" "" "the restored files equal the saved ones"
    rm -f "$SAVED"
else
    skip "there were no make-install files to restore"
fi
note "after the build: $((SECONDS - T0))s in all"
done_testing
