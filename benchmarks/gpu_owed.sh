#!/usr/bin/env bash
# The GPU measurements issue 15 still owes, as one prepared script for the device machine (one
# call; each part writes its file as it finishes, so a call cut short still returns the parts
# done). From the repository root, on a CUDA machine with torch and transformers:
#
#     OUT=/some/folder bash benchmarks/gpu_owed.sh      # default OUT: /tmp/gpu_owed
#
# Writes <benchmark>.<card>.out.txt (the benchmark's own lines) and a .log beside each (progress).
# Commit the .out.txt files under benchmarks/ with the card's name, as they are.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:-/tmp/gpu_owed}
mkdir -p "$OUT"
card=$($PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())") || exit 1
tag=$(echo "$card" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-' | sed 's/-$//')
stamp="# $(date -u +%F), $card, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

part() {  # name, then the command
    local name=$1; shift
    echo "== $name: $*"
    { echo "$stamp"; echo "# $*"; "$@" 2> "$OUT/$name.$tag.log"; } > "$OUT/$name.$tag.out.txt"
    echo "   exit $?; $(tail -1 "$OUT/$name.$tag.out.txt")"
}

# capture + encode >= 0.5x the plain truncated forward, shard writes included (paper-models issue)
part capture_throughput $PY benchmarks/capture_throughput.py --arch gemma2-2b --layer 12 --tokens 1048576
# three hooks from one forward (the whole-network audit), beside the one-hook line above
part capture_throughput.three-hooks $PY benchmarks/capture_throughput.py --arch gemma2-2b --layer 6 12 18 --tokens 1048576
# whole variant jobs: Pythia-70M and Gemma-2-2B architectures, random weights
part variant_job_throughput.pythia-70m $PY benchmarks/variant_job_throughput.py --arch pythia-70m --layer 3 \
    --audit-tokens 1048576 --heldout-tokens 131072 --d-sae 32768
part variant_job_throughput.gemma2-2b $PY benchmarks/variant_job_throughput.py --arch gemma2-2b --layer 12 \
    --audit-tokens 262144 --heldout-tokens 32768 --d-sae 16384
