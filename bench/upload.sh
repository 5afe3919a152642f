#!/usr/bin/env bash
# Upload throughput and memory of the orchestra: a ~1 GiB raw-video MKV uploaded 3 times with
# curl to a release build (standalone), against `cp` of the same file on the same disk.
# Usage: bash bench/upload.sh   (builds the release binary; needs ffmpeg and curl)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p orchestra
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
ffmpeg -v error -y -f lavfi -i testsrc=size=1280x720:rate=25:duration=30 \
  -c:v rawvideo -pix_fmt yuv420p "$work/big.mkv"
size=$(stat -c %s "$work/big.mkv")
(cd "$work" && OSCIED_LISTEN=127.0.0.1:$port OSCIED_ROOT_SECRET=bench-root \
  exec "$OLDPWD/target/release/orchestra" > orchestra.log 2>&1) &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.1; done
api=http://127.0.0.1:$port/api/v1
curl -sf -u root:bench-root -H 'Content-Type: application/json' \
  -d '{"first_name":"B","last_name":"B","mail":"b@example.com","secret":"benchmark"}' "$api/users" >/dev/null
echo "file: $size bytes"
for i in 1 2 3; do
  curl -sf -o /dev/null -u b@example.com:benchmark -F "file=@$work/big.mkv" -F title=big \
    -w "upload $i: %{time_total} s, %{speed_upload} B/s\n" "$api/medias"
done
echo "orchestra peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
sync
start=$(date +%s.%N); cp "$work/big.mkv" "$work/copy.mkv"; sync; end=$(date +%s.%N)
echo "cp + sync of the same file: $(echo "$end - $start" | bc) s"
