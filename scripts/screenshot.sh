#!/usr/bin/env bash
# Screenshot rendered pages of the built book in headless Chromium (Debian package `chromium`),
# served over http on 127.0.0.1 as a reader's browser would get them.
#   scripts/screenshot.sh [OUT_DIR] [PAGE ...]     (default pages: intro and the CoOp chapter)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-_build/screenshots}; shift || true
pages=("$@"); [ ${#pages[@]} -gt 0 ] || pages=(book/intro book/02_coop)
[ -d _build/html ] || { echo "build the book first: make html" >&2; exit 1; }
command -v chromium >/dev/null || { echo "install Debian's chromium: apt-get install -y chromium" >&2; exit 1; }
mkdir -p "$out"
port=8765
python3 -m http.server "$port" --bind 127.0.0.1 --directory _build/html >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 1
for page in "${pages[@]}"; do
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --user-data-dir="$profile" --window-size=1280,2400 \
    --screenshot="$out/$(basename "$page").png" "http://127.0.0.1:$port/$page.html" 2>/dev/null
  rm -rf "$profile"
  echo "$out/$(basename "$page").png"
done
