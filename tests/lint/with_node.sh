#!/bin/sh
# with_node.sh NODE ARGS...: runs NODE ARGS..., or exits 77 (ctest's SKIP_RETURN_CODE for these
# tests) saying why when node is missing, so that a machine without node shows a skip, not a pass.
node=$1
shift
if [ -z "$node" ] || ! command -v "$node" >/dev/null 2>&1; then
  echo "SKIP: node not found (install nodejs or set NODE_EXECUTABLE): cannot run node $*"
  exit 77
fi
exec "$node" "$@"
