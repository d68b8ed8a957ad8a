#!/usr/bin/env bash
# Issue #17's gateway figures in one run: access-check latency and throughput on SQLite and
# PostgreSQL, presence answers against py_webauthn's single-core verify rate (measured here, in a
# venv this script makes), Envoy ext_authz Check against CheckAccess, and access checks at 1k,
# 100k and 1M devices. Prints one markdown table (figure | measured | goal | met), then the raw
# tether-bench rows it was computed from. See docs/benchmarks.md.
#   tests/bench/gateway.sh [SECONDS]      # SECONDS of timed access checks per run (default 20)
# PostgreSQL: TETHER_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432).
# The venv: $CARGO_TARGET_DIR/bench-venv (or target/bench-venv); BENCH_VENV=DIR to put it elsewhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-20}"
case "$seconds" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
pg="${TETHER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
target_dir="${CARGO_TARGET_DIR:-target}"
venv="${BENCH_VENV:-$target_dir/bench-venv}"
out="$target_dir/gateway-bench"   # each run's full output (seeding times, warnings), kept
bench="$target_dir/release/tether-bench"
started=$SECONDS
mkdir -p "$out"
rm -f "$out"/*.out

note() { echo "gateway.sh: $*" >&2; }

note "building tetherd and tether-bench (release)"
cargo build --release -q -p tetherd --bins
cargo build --release -q -p tether-e2e --bin tether-bench

# --- py_webauthn: one core's WebAuthn assertion verify rate -------------------------------------
py_rate=""
py_why=""
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import webauthn, cryptography' 2>/dev/null; then
    note "making the venv $venv (pip install webauthn)"
    if ! python3 -m venv "$venv" >"$out/venv.out" 2>&1; then
        py_why="not measured (python3 -m venv failed, see $out/venv.out)"
    elif ! "$venv/bin/pip" install -q webauthn >>"$out/venv.out" 2>&1; then
        py_why="not measured (pip could not install webauthn, see $out/venv.out)"
    fi
fi
if [ -z "$py_why" ] && ! command -v taskset >/dev/null; then
    py_why="not measured (taskset, from util-linux, is missing)"
fi
if [ -z "$py_why" ]; then
    note "measuring py_webauthn's verify rate on core 0"
    if py_rate=$(taskset -c 0 "$venv/bin/python" tests/bench/py_webauthn_rate.py 5 2>"$out/py_webauthn.out") &&
        [[ "$py_rate" =~ ^[0-9]+$ ]]; then
        cat "$out/py_webauthn.out" >&2
    else
        py_rate=""
        py_why="not measured (py_webauthn_rate.py failed, see $out/py_webauthn.out)"
    fi
fi

# --- tether-bench runs ----------------------------------------------------------------------------
# run NAME STORE DEVICES CLIENTS [more tether-bench flags]: full output in $out/NAME.out.
run() {
    local name="$1" store="$2" devices="$3" clients="$4"
    shift 4
    local args=(--seed "$devices" --concurrency "$clients" --seconds "$seconds" "$@")
    note "run $name: $store, ${args[*]}"
    local status=0
    if [ "$store" = postgres ]; then
        TETHER_TEST_POSTGRES_URL="$pg" "$bench" "${args[@]}" >"$out/$name.out" 2>&1 || status=$?
    else
        env -u TETHER_TEST_POSTGRES_URL "$bench" "${args[@]}" >"$out/$name.out" 2>&1 || status=$?
    fi
    if [ "$status" -ne 0 ]; then
        note "run $name failed (exit $status), last lines of $out/$name.out:"
        tail -n 5 "$out/$name.out" >&2
    fi
    grep -E '^(seeded [0-9]+ devices \(|tetherd restarted|made [0-9]+ device cert|WARNING|flags raised)' \
        "$out/$name.out" | sed "s/^/  [$name] /" >&2 || true
}

# The row of run NAME for an operation (its first words), or nothing.
row() { grep -F "| $2" "$out/$1.out" 2>/dev/null | grep '^| ' | head -n 1 || true; }
# Column N of a row (1 store, 2 devices, 3 replicas, 4 clients, 5 operation, 6 calls,
# 7 per second, 8 p50 ms, 9 p99 ms).
col() { awk -F'|' -v n="$(($2 + 1))" '{ gsub(/^ +| +$/, "", $n); print $n }' <<<"$1"; }
# Failed or denied calls a run reported (their figures exclude them; the table says so).
warned() { grep -q '^WARNING' "$out/$1.out" 2>/dev/null; }

run sqlite-100k sqlite 100000 32 --ext-authz
run sqlite-100k-1client sqlite 100000 1 --no-presence
run sqlite-1k sqlite 1000 32
run sqlite-1M sqlite 1000000 32

pg_why=""
if ! psql "$pg/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    case "$pg" in
    *@127.0.0.1:* | *@localhost:* | *@\[::1\]:*)
        if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
            for version in /etc/postgresql/*; do
                note "PostgreSQL is down: starting cluster $(basename "$version")/main"
                pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start >&2 || true
            done
        fi
        ;;
    esac
fi
if psql "$pg/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    run postgres-100k postgres 100000 32 --no-presence
else
    pg_why="not measured (no PostgreSQL at $pg)"
fi

# --- the table ------------------------------------------------------------------------------------
# awk arithmetic on figures: calc EXPR A [B] (EXPR names them a and b).
calc() { awk -v a="$2" -v b="${3:-0}" "BEGIN { print ($1) }"; }
# 1 when the lowest of the figures is at least 80 % of the highest.
flat() { tr ' ' '\n' <<<"$*" | sort -g | awk 'NR == 1 { min = $1 } { max = $1 } END { print (min >= 0.8 * max) }'; }
yes_no() { if [ "$1" = 1 ]; then echo yes; else echo no; fi; }
check="access check (decide"
answer="presence answer (verify"
envoy="ext_authz check (decide"
caveat() { if warned "$1"; then echo " — failures or flags, see $out/$1.out"; fi; }

echo
echo "| figure | measured | goal | met |"
echo "|---|---|---|---|"

r=$(row sqlite-100k-1client "$check")
if [ -n "$r" ]; then
    p50=$(col "$r" 8) p99=$(col "$r" 9)
    met=$(yes_no "$(calc 'a < 0.5 && b < 2' "$p50" "$p99")")
    echo "| access check, 1 client, SQLite, 100k devices | p50 $p50 ms, p99 $p99 ms$(caveat sqlite-100k-1client) | p50 < 0.5 ms, p99 < 2 ms | $met |"
else
    echo "| access check, 1 client, SQLite, 100k devices | not measured (run failed, see $out/sqlite-100k-1client.out) | p50 < 0.5 ms, p99 < 2 ms | no |"
fi

sqlite_check=$(row sqlite-100k "$check")
if [ -n "$sqlite_check" ]; then
    rate=$(col "$sqlite_check" 7)
    met=$(yes_no "$(calc 'a >= 10000' "$rate")")
    echo "| access checks/s, 32 clients, SQLite | $rate/s (100k devices; p50 $(col "$sqlite_check" 8) ms, p99 $(col "$sqlite_check" 9) ms)$(caveat sqlite-100k) | ≥ 10,000 | $met |"
else
    echo "| access checks/s, 32 clients, SQLite | not measured (run failed, see $out/sqlite-100k.out) | ≥ 10,000 | no |"
fi

r=""
if [ -z "$pg_why" ]; then r=$(row postgres-100k "$check"); fi
if [ -n "$r" ]; then
    rate=$(col "$r" 7)
    met=$(yes_no "$(calc 'a >= 3000' "$rate")")
    echo "| access checks/s, 32 clients, PostgreSQL (same machine) | $rate/s (100k devices; p50 $(col "$r" 8) ms, p99 $(col "$r" 9) ms)$(caveat postgres-100k) | ≥ 3,000 | $met |"
else
    echo "| access checks/s, 32 clients, PostgreSQL (same machine) | ${pg_why:-not measured (run failed, see $out/postgres-100k.out)} | ≥ 3,000 | no |"
fi

r=$(row sqlite-100k "$answer")
if [ -n "$r" ] && [ -n "$py_rate" ]; then
    rate=$(col "$r" 7)
    met=$(yes_no "$(calc 'a >= b' "$rate" "$py_rate")")
    echo "| presence answers/s end to end, SQLite | $rate/s (100k devices, 32 clients); py_webauthn $py_rate/s on one core$(caveat sqlite-100k) | ≥ py_webauthn's single-core verify rate in the same run ($py_rate/s) | $met |"
elif [ -n "$r" ]; then
    echo "| presence answers/s end to end, SQLite | $(col "$r" 7)/s (100k devices, 32 clients); py_webauthn $py_why | ≥ py_webauthn's single-core verify rate in the same run | not measured |"
else
    echo "| presence answers/s end to end, SQLite | not measured (run failed, see $out/sqlite-100k.out); py_webauthn ${py_rate:+$py_rate/s}${py_why} | ≥ py_webauthn's single-core verify rate in the same run | no |"
fi

r=$(row sqlite-100k "$envoy")
if [ -n "$r" ] && [ -n "$sqlite_check" ]; then
    rate=$(col "$r" 7) base=$(col "$sqlite_check" 7)
    share=$(calc 'sprintf("%.0f", 100 * a / (b > 0 ? b : 1))' "$rate" "$base")
    met=$(yes_no "$(calc 'a >= 0.8 * b' "$rate" "$base")")
    echo "| Envoy ext_authz Check, 32 clients | $rate/s = $share % of CheckAccess's $base/s (SQLite, 100k devices; p50 $(col "$r" 8) ms, p99 $(col "$r" 9) ms) | within 20 % of CheckAccess | $met |"
else
    echo "| Envoy ext_authz Check, 32 clients | not measured (run failed, see $out/sqlite-100k.out) | within 20 % of CheckAccess | no |"
fi

population=""
rates=() p50s=()
for run_name in sqlite-1k sqlite-100k sqlite-1M; do
    r=$(row "$run_name" "$check")
    label=${run_name#sqlite-}
    if [ -z "$r" ]; then
        population+="${population:+; }$label: not measured (see $out/$run_name.out)"
        continue
    fi
    rates+=("$(col "$r" 7)")
    p50s+=("$(col "$r" 8)")
    population+="${population:+; }$label: $(col "$r" 7)/s, p50 $(col "$r" 8) ms$(caveat "$run_name")"
done
if [ "${#rates[@]}" -eq 3 ]; then
    met=$(yes_no "$(($(flat "${rates[@]}") && $(flat "${p50s[@]}")))")
else
    met=no
fi
echo "| population 1k → 1M devices | $population (SQLite, 32 clients) | flat (checks/s and p50 within 20 % of each other) | $met |"

# --- raw rows -------------------------------------------------------------------------------------
echo
echo "Raw tether-bench rows (full output in $out/):"
echo
echo "| store | devices | replicas | clients | operation | calls | per second | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
for run_name in sqlite-100k sqlite-100k-1client sqlite-1k sqlite-1M postgres-100k; do
    if [ -f "$out/$run_name.out" ]; then grep '^| ' "$out/$run_name.out" | grep -v '^| store' || true; fi
done
if [ -n "$py_rate" ]; then
    echo
    echo "py_webauthn (taskset -c 0): $py_rate verified assertions/s — $(cat "$out/py_webauthn.out")"
fi
for run_name in sqlite-100k sqlite-100k-1client sqlite-1k sqlite-1M postgres-100k; do
    if warned "$run_name"; then
        echo
        echo "$run_name:"
        grep '^WARNING' "$out/$run_name.out"
    fi
done
note "done in $((SECONDS - started)) s"
