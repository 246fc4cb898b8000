# test/lib/tap.sh -- minimal TAP for bash test scripts run by prove (source it).
#
#   plan N | plan skip_all REASON
#   ok DESC CMD [ARGS...]        pass if CMD exits 0 (run in this shell; its
#                                output is shown as diagnostics only on failure)
#   is GOT EXPECTED DESC         string equality; on failure "# got: X expected: Y"
#   isnt GOT UNEXPECTED DESC
#   like GOT REGEX DESC          bash ERE match ([[ GOT =~ REGEX ]])
#   unlike GOT REGEX DESC
#   cmp_ok GOT OP EXPECTED DESC  OP: -eq -ne -lt -le -gt -ge (integers) or == !=
#   pass DESC | fail DESC | skip REASON [N] | diag MSG... | note MSG...
#   BAIL_OUT REASON
#   done_testing [N]
#   wait_until TIMEOUT_S 'SHELL CONDITION' [INTERVAL_S]
#                                eval CONDITION (output discarded) until it is
#                                true: returns 0, else 1 after TIMEOUT_S with a
#                                diag. Sets WAIT_ELAPSED_MS. Assert with
#                                  ok "rows arrived" wait_until 30 '[[ $(pg_psql b -c "...") == 5 ]]'
#   on_exit 'CMD'                run CMD (eval) at exit, before nodes are stopped
#
# Assertions return 0 on pass and 1 on failure, so under `set -e` the first
# failure ends the script (cleanup still runs). Without -e the script goes on.
#
# Cleanup: an EXIT trap (also reached on INT/TERM/HUP) runs the on_exit hooks,
# then stops every node/process this script started with rmq_start, pg_start
# or bg_start (newest first) -- nothing else. If tests failed or the script
# died, the tails of their logs are printed as diagnostics (EVREP_TAP_LOG_LINES,
# default 40; 0 disables). The script's exit status is non-zero if any test
# failed or the script itself failed. If no plan was given, one is printed at
# exit.

[[ -n "${_EVREP_TAP_SH:-}" ]] && return 0
_EVREP_TAP_SH=1

_tap_libdir=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=common.sh
source "$_tap_libdir/common.sh"
# shellcheck source=rabbitmq.sh
source "$_tap_libdir/rabbitmq.sh"
# shellcheck source=pg.sh
source "$_tap_libdir/pg.sh"

_TAP_N=0
_TAP_FAILED=0
_TAP_PLANNED=
_TAP_DONE=
_TAP_ON_EXIT=()

plan() {
    if [[ "${1:-}" == skip_all ]]; then
        echo "1..0 # SKIP ${2:-}"; _TAP_PLANNED=0; _TAP_DONE=1; exit 0
    fi
    [[ "${1:-}" =~ ^[0-9]+$ ]] || { evrep_err "plan: need a number"; return 1; }
    [[ -n "$_TAP_PLANNED" ]] && { evrep_err "plan: already planned"; return 1; }
    _TAP_PLANNED=$1
    echo "1..$1"
}

diag() { local l; while IFS= read -r l; do printf '# %s\n' "$l" >&2; done <<<"$*"; }
note() { local l; while IFS= read -r l; do printf '# %s\n' "$l"; done <<<"$*"; }

# _tap_result STATUS(0=pass) DESC [DIAG] -- print the TAP line (and, on
# failure, DIAG) and return STATUS. Always the last command of an assertion,
# so that diagnostics are printed even when the caller runs under set -e.
_tap_result() {
    _TAP_N=$((_TAP_N + 1))
    local desc=${2//#/\\#}
    if [[ "$1" == 0 ]]; then
        echo "ok $_TAP_N - $desc"
        return 0
    fi
    _TAP_FAILED=$((_TAP_FAILED + 1))
    echo "not ok $_TAP_N - $desc"
    diag "  Failed test '$2'"$'\n'"  at ${BASH_SOURCE[2]:-?} line ${BASH_LINENO[1]:-?}."
    [[ -n "${3:-}" ]] && diag "$3"
    return 1
}

pass() { _tap_result 0 "${1:-}"; }
fail() { _tap_result 1 "${1:-}" "${2:-}"; }

skip() {
    local reason=${1:-} n=${2:-1} i
    for ((i = 0; i < n; i++)); do
        _TAP_N=$((_TAP_N + 1)); echo "ok $_TAP_N # skip $reason"
    done
}

ok() {
    local desc=${1:?usage: ok DESC CMD [ARGS...]}; shift
    (( $# )) || { _tap_result 1 "$desc" "ok: no command given"; return; }
    local out rc msg
    out=$(mktemp "${TMPDIR:-/tmp}/evrep-tap.XXXXXX")
    "$@" >"$out" 2>&1 && rc=0 || rc=$?
    if (( rc == 0 )); then
        rm -f "$out"; _tap_result 0 "$desc"; return
    fi
    msg="  command: $* (exit $rc)"
    [[ -s "$out" ]] && msg+=$'\n'"  output:"$'\n'"$(tail -n 50 "$out" | sed 's/^/    /')"
    rm -f "$out"
    _tap_result 1 "$desc" "$msg"
}

is() {
    local got=$1 exp=$2 desc=${3:-}
    [[ "$got" == "$exp" ]] && { _tap_result 0 "$desc"; return; }
    _tap_result 1 "$desc" "got: '$got' expected: '$exp'"
}

isnt() {
    local got=$1 exp=$2 desc=${3:-}
    [[ "$got" != "$exp" ]] && { _tap_result 0 "$desc"; return; }
    _tap_result 1 "$desc" "got: '$got' expected: anything else"
}

like() {
    local got=$1 re=$2 desc=${3:-}
    [[ "$got" =~ $re ]] && { _tap_result 0 "$desc"; return; }
    _tap_result 1 "$desc" "got: '$got' expected to match: /$re/"
}

unlike() {
    local got=$1 re=$2 desc=${3:-}
    [[ "$got" =~ $re ]] || { _tap_result 0 "$desc"; return; }
    _tap_result 1 "$desc" "got: '$got' expected not to match: /$re/"
}

cmp_ok() {
    local got=$1 op=$2 exp=$3 desc=${4:-} res=1
    case "$op" in
        -eq|-ne|-lt|-le|-gt|-ge)
            if [[ "$got" =~ ^-?[0-9]+$ && "$exp" =~ ^-?[0-9]+$ ]] && test "$got" "$op" "$exp"; then res=0; fi ;;
        ==) [[ "$got" == "$exp" ]] && res=0 ;;
        !=) [[ "$got" != "$exp" ]] && res=0 ;;
        *) _tap_result 1 "$desc" "cmp_ok: unknown operator '$op'"; return ;;
    esac
    (( res == 0 )) && { _tap_result 0 "$desc"; return; }
    _tap_result 1 "$desc" "got: '$got' expected: $op '$exp'"
}

BAIL_OUT() { echo "Bail out!  ${1:-}"; exit 255; }

done_testing() {
    local n=${1:-$_TAP_N}
    if [[ -n "$_TAP_PLANNED" ]]; then
        [[ "$_TAP_PLANNED" == "$n" ]] || diag "planned $_TAP_PLANNED tests but ran $_TAP_N"
    else
        echo "1..$n"; _TAP_PLANNED=$n
    fi
    _TAP_DONE=1
}

_tap_now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

wait_until() {
    local timeout=${1:?usage: wait_until TIMEOUT_S 'condition' [interval_s]} cond=${2:?usage: wait_until TIMEOUT_S 'condition'} iv=${3:-0.2}
    local start now
    start=$(_tap_now_ms)
    local deadline=$((start + timeout * 1000))
    while :; do
        if eval "$cond" >/dev/null 2>&1; then
            WAIT_ELAPSED_MS=$(( $(_tap_now_ms) - start ))
            return 0
        fi
        now=$(_tap_now_ms)
        if (( now >= deadline )); then
            WAIT_ELAPSED_MS=$((now - start))
            diag "wait_until: not true after ${timeout}s: $cond"
            return 1
        fi
        sleep "$iv"
    done
}

on_exit() { _TAP_ON_EXIT+=("$1"); }

_tap_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP PIPE
    local i
    for ((i = ${#_TAP_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${_TAP_ON_EXIT[i]}" || diag "on_exit hook failed: ${_TAP_ON_EXIT[i]}"
    done
    local logs; logs=$(evrep_registered_logs)
    evrep_stop_registered
    if [[ -z "$_TAP_PLANNED" && $_TAP_N -gt 0 ]]; then
        echo "1..$_TAP_N"
    fi
    if (( _TAP_FAILED > 0 || rc != 0 )); then
        (( _TAP_FAILED > 0 )) && diag "Looks like you failed $_TAP_FAILED test(s) of $_TAP_N."
        (( rc != 0 )) && diag "Script exited with status $rc after $_TAP_N test(s)."
        local lines=${EVREP_TAP_LOG_LINES:-40} f
        if (( lines > 0 )); then
            while IFS= read -r f; do [[ -n "$f" ]] && evrep_tail "$f" "$lines"; done <<<"$logs"
        fi
        (( rc == 0 )) && rc=$(( _TAP_FAILED > 254 ? 254 : _TAP_FAILED ))
    fi
    exit "$rc"
}

trap _tap_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
