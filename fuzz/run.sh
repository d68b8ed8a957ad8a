#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) with cargo-fuzz for SECONDS each (default 60)
# and prints one summary line per target. Works on stable Rust: RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its -Z flags, and the default sanitizer is none (the code under test is
# safe Rust; FUZZ_SANITIZER=address turns AddressSanitizer on).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_SANITIZER (none), FUZZ_FEATURES (extra cargo-fuzz feature flags, e.g.
# "--no-default-features --features libfuzzer" to skip the analyze target).
# New inputs go to fuzz/target/corpus/<target>; crashes to fuzz/artifacts/<target>/.
# Exit status 1 if any target found a crash, leak, timeout or out-of-memory input.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a features <<<"${FUZZ_FEATURES:-}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

# Only analyze_events needs the risk engine (tether-risk): the other targets build without it, so an
# engine change (or a broken engine build) never touches them.
features_for() {
    if [ "${#features[@]}" -gt 0 ]; then
        printf '%s\n' "${features[@]}"
    elif [ "$1" != analyze_events ]; then
        printf '%s\n' --no-default-features --features libfuzzer
    fi
}
cargo fuzz build --sanitizer "$sanitizer" --no-default-features --features libfuzzer >/dev/null 2>&1 || true

# Real-device seeds are read from ../shared at run time, never committed.
seeds=target/seeds
rm -rf "$seeds"
cargo run --quiet --no-default-features --example shared_seeds -- "$seeds" || true

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
    # The analyze target needs the `analyze` feature (on by default).
    if [[ " ${features[*]} " == *" --no-default-features "* && " ${features[*]} " != *analyze* ]]; then
        mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -v '^analyze_events$')
    fi
fi

failed=0
printf '%-20s %12s %8s %8s  %s\n' target execs seconds corpus result
for target in "${targets[@]}"; do
    mkdir -p "target/corpus/$target" "artifacts/$target"
    dirs=("target/corpus/$target" "corpus/$target")
    [ -d "$seeds/$target" ] && dirs+=("$seeds/$target")
    log="target/fuzz-$target.log"
    status=0
    mapfile -t target_features < <(features_for "$target")
    nice -n 10 cargo fuzz run --sanitizer "$sanitizer" "${target_features[@]}" "$target" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
    size=$(find "target/corpus/$target" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=clean
    elif grep -q 'failed to build fuzz script' "$log"; then
        result="BUILD FAILED: see fuzz/$log"
        failed=1
    else
        result="CRASH (exit $status): $(grep -m1 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" || echo "see fuzz/$log")"
        failed=1
    fi
    printf '%-20s %12s %8s %8s  %s\n' "$target" "${execs:-?}" "${took:-$seconds}" "$size" "$result"
done
exit "$failed"
