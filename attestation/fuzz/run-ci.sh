#!/usr/bin/env bash
# Run every cargo-fuzz target of attestation/ briefly, seeded from ../shared/vectors.
#
#   attestation/fuzz/run-ci.sh [SECONDS]     (default 20 per target)
#
# Installs cargo-fuzz when missing. Runs on stable with `-s none` (no sanitizer: the
# code under test is safe Rust). Exits non-zero when a target crashes; the crashing
# input is left in attestation/fuzz/artifacts/<target>/.
set -euo pipefail

secs="${1:-20}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate_dir="$(dirname "$fuzz_dir")"
vectors="$(cd "$crate_dir/../.." && pwd)/shared/vectors"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-ci.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if [ ! -d "$vectors" ]; then
    echo "run-ci.sh: no vectors at $vectors (expected ../shared/vectors beside the repo)" >&2
    exit 1
fi

# Seeds per target, by name prefix: real evidence of that kind.
seed() {
    local target="$1" dir="$fuzz_dir/corpus/$1"
    mkdir -p "$dir"
    case "$target" in
        snp_*) find "$vectors/snp" -name 'report.bin' ;;
        tdx_*) find "$vectors/tdx" "$vectors/sgx" -name 'quote.bin' ;;
        *) true ;;
    esac | while read -r f; do
        cp "$f" "$dir/seed-$(sha256sum "$f" | cut -c1-16)"
    done
}

cd "$crate_dir"
status=0
for src in "$fuzz_dir"/fuzz_targets/*.rs; do
    target="$(basename "$src" .rs)"
    seed "$target"
    echo "run-ci.sh: fuzzing $target for ${secs}s"
    if ! cargo fuzz run -s none "$target" "$fuzz_dir/corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1; then
        echo "run-ci.sh: $target FAILED (see $fuzz_dir/artifacts/$target)" >&2
        status=1
    fi
done
exit "$status"
