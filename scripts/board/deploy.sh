#!/usr/bin/env bash
# Copy the overlay (edgemoe.bit + edgemoe.hwh) and a weight bundle to a ZCU104 running
# PYNQ 3.x, then run `edgemoe run --backend pynq` there. See scripts/board/README.md.
#
#   scripts/board/deploy.sh BOARD OVERLAY_DIR BUNDLE [-- extra `edgemoe run` args]
#   e.g. scripts/board/deploy.sh xilinx@192.168.2.99 build/overlay build/bundle.bin -- --task semseg
#
# BOARD_DIR (default /home/xilinx/edgemoe) is the folder on the board; the repository is
# expected at $BOARD_DIR/src (copied by this script, installed with pip on first use).
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
board=$1 overlay=$2 bundle=$3
shift 3
[ "${1:-}" = "--" ] && shift
remote=${BOARD_DIR:-/home/xilinx/edgemoe}
repo=$(cd "$(dirname "$0")/../.." && pwd)

for f in "$overlay/edgemoe.bit" "$overlay/edgemoe.hwh" "$bundle"; do
    [ -f "$f" ] || { echo "deploy.sh: $f not found" >&2; exit 2; }
done

ssh "$board" "mkdir -p $remote/overlay $remote/src"
scp "$overlay/edgemoe.bit" "$overlay/edgemoe.hwh" "$bundle" "$board:$remote/overlay/"
# the sources without build products; the board installs the package without torch extras
tar -C "$repo" --exclude=.venv --exclude=build --exclude=.git -czf - . \
    | ssh "$board" "tar -C $remote/src -xzf -"
# PYNQ's own Python (the pynq venv) runs the host code; sudo because PYNQ maps /dev/mem.
ssh -t "$board" "cd $remote && sudo -E bash -c '
    source /etc/profile.d/pynq_venv.sh 2>/dev/null || true
    pip install -q -e src
    EDGEMOE_BITFILE=$remote/overlay/edgemoe.bit edgemoe run --backend pynq \
        --bundle $remote/overlay/$(basename "$bundle") --out $remote/run-out $*
'"
echo "deploy.sh: results in $board:$remote/run-out"
