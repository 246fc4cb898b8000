# services/test_lib.sh -- what the services' own scripts share
# (test_services.sh, twopc/test_twopc.sh, bench_services.sh): a work
# directory of their own, the project's harness, the end of a test.
#
#   source .../services/test_lib.sh NAME [tap]
#       makes the work directory NAME.XXXXXX below EVREP_TEST_DIR (default
#       /tmp) and exports it as EVREP_TEST_DIR, then sources test/lib/tap.sh
#       (with "tap") and test/lib/topology.sh; SVC_DIR is services/.
#   svc_test_end
#       after done_testing: when every test passed (and KEEP_TEST_DIR is not
#       1), stops what the script started and removes the work directory;
#       else says where the work directory is (kept to look into).
# Sourced, not run: the harness must be sourced at the top level of the
# script (its associative arrays would be local to a function).

SVC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_svc_base=${EVREP_TEST_DIR:-/tmp}
[[ -d $_svc_base ]] || { mkdir -p "$_svc_base" && chmod 755 "$_svc_base"; } || exit 1
EVREP_TEST_DIR=$(mktemp -d "$_svc_base/${1:?usage: source test_lib.sh NAME [tap]}.XXXXXX") || exit 1
chmod 755 "$EVREP_TEST_DIR"
export EVREP_TEST_DIR
if [[ ${2:-} == tap ]]; then
    # shellcheck source=../test/lib/tap.sh
    source "$SVC_DIR/../test/lib/tap.sh"
fi
# shellcheck source=../test/lib/topology.sh
source "$SVC_DIR/../test/lib/topology.sh"

svc_test_end() {
    if (( _TAP_FAILED == 0 )) && [[ ${KEEP_TEST_DIR:-0} != 1 ]]; then
        evrep_stop_registered
        rm -rf "$EVREP_TEST_DIR"
    else
        echo "# work directory kept: $EVREP_TEST_DIR"
    fi
}
