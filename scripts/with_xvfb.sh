#!/bin/sh
# with_xvfb.sh CMD [ARG...]: runs CMD with DISPLAY set to a fresh Xvfb server, then stops that
# server by its pid. Xvfb chooses a free display and writes its number to -displayfd only once it
# accepts connections, so CMD never starts before the display is ready (xvfb-run's fixed wait
# could lose that race on a first run). Exits with CMD's status, or 91 when Xvfb does not start.
set -u
dir=$(mktemp -d)
xvfb=""
cleanup() {
  if [ -n "$xvfb" ]; then kill "$xvfb" 2>/dev/null; wait "$xvfb" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
mkfifo "$dir/display"
Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$dir/display" 2>"$dir/xvfb.log" &
xvfb=$!
display=""
read -r display < "$dir/display" || true
if [ -z "$display" ]; then
  echo "with_xvfb.sh: Xvfb did not start: $(tail -n 3 "$dir/xvfb.log" | tr '\n' ' ')" >&2
  exit 91
fi
DISPLAY=":$display" "$@"
