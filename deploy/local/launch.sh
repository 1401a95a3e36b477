#!/usr/bin/env bash
# Start one `parley node` per config file on this machine and stop them all together.
#
#   deploy/local/launch.sh [--bin PATH] NODE.toml [NODE.toml ...]
#
# Each node logs to node.log in its config's directory. Ctrl-C (or SIGTERM, or any node
# exiting) stops every node; the nodes also die if this script is killed outright
# (they run with --die-with-parent). Create configs with `parley demo --dir DIR` or by hand
# (see ARCHITECTURE.md).
set -euo pipefail

bin=${PARLEY_BIN:-parley}
if [ "${1:-}" = "--bin" ]; then bin=$2; shift 2; fi
if [ $# -eq 0 ]; then
  echo "usage: $0 [--bin PATH] NODE.toml [NODE.toml ...]" >&2
  exit 2
fi
command -v "$bin" >/dev/null 2>&1 || { echo "error: cannot find the parley binary '$bin' (use --bin PATH or PARLEY_BIN)" >&2; exit 2; }

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for cfg in "$@"; do
  [ -f "$cfg" ] || { echo "error: no config file $cfg" >&2; exit 2; }
  log="$(dirname "$cfg")/node.log"
  "$bin" node --config "$cfg" --die-with-parent >>"$log" 2>&1 &
  pids+=("$!")
  echo "started $cfg (pid $!, log $log)"
done

# Wait until any node exits, then stop the rest.
set +e
wait -n "${pids[@]}"
rc=$?
echo "a node exited with status $rc; stopping the others" >&2
exit "$rc"
