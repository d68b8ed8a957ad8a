#!/usr/bin/env bash
# The scale matrix of BENCHMARKS.md: presence answers/s and access checks/s (p50/p99) with 1, 2
# and 3 tetherd replicas on one SQLite file and on one PostgreSQL database, at 10k and 1M seeded
# devices, plus the gateway decision latency at 100k devices. Each run seeds a fresh database.
#   tests/bench/scale.sh [SECONDS] [CONCURRENCY] > rows.md
# PostgreSQL runs use TETHER_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-20}"
concurrency="${2:-32}"
pg="${TETHER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
cargo build --release -q -p tetherd --bins
cargo build --release -q -p tether-e2e --bin tether-bench
target_dir="${CARGO_TARGET_DIR:-target}"
bench="$target_dir/release/tether-bench"
log="$target_dir/scale-bench.log"   # everything the runs print (seeding and restart times, warnings)
: > "$log"
echo "| store | devices | replicas | clients | operation | calls | per second | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
run() { # store devices replicas
    local store="$1" devices="$2" replicas="$3"
    local args=(--seed "$devices" --replicas "$replicas" --concurrency "$concurrency" --seconds "$seconds")
    if [ "$store" = postgres ]; then
        TETHER_TEST_POSTGRES_URL="$pg" "$bench" "${args[@]}"
    else
        env -u TETHER_TEST_POSTGRES_URL "$bench" "${args[@]}"
    fi 2>&1 | tee -a "$log" | grep '^| ' | grep -v '^| store' || true
}
for store in sqlite postgres; do
    for devices in 10000 1000000; do
        for replicas in 1 2 3; do
            run "$store" "$devices" "$replicas"
        done
    done
    run "$store" 100000 1
    # One client at a time: the latency a gateway sees inline, without queueing behind others.
    concurrency=1 run "$store" 100000 1
done
