#!/usr/bin/env bash
# Decoding speed against its yardsticks (issue 10), one thread, shipped binarized model; run on
# an otherwise idle machine: `bash benchmarks/speed.sh [WORKDIR]`.
#   10,000 binarized MNIST test images: one batched forward pass of the networks
#   (benchmarks.run.forward_pass_seconds), compress --order set, decompress (timed), lossless?
#   the first 500: `acnzip eval` against decompress --order set and keep.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"; mkdir -p "$work"; cd "$work"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
python - "$root" <<'PY'
import sys, numpy as np
x = np.load(f"{sys.argv[1]}/../shared/datasets/binarized_mnist/test.npz")["x"]
np.save("bin10k.npy", x); np.save("bin500.npy", x[:500])
PY
python -c "
from pathlib import Path; from benchmarks.run import forward_pass_seconds
from acnzip.modelfile import DEFAULT_MODEL
print('forward pass 10k: %.1f s' % forward_pass_seconds(DEFAULT_MODEL, Path('bin10k.npy'), 256, 1)['seconds'])"
exec 3>&1     # t: run a command, then print its wall time (to the script's stdout)
t() { local s=$(date +%s.%N); "$@"; python -c "import sys; print('%.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$s" "$(date +%s.%N)" >&3; }
echo -n "compress 10k set: "; t acnzip compress bin10k.npy -o bin10k.acn --order set --threads 1 -f -q
echo -n "decompress 10k set: "; t acnzip decompress bin10k.acn -o out10k --threads 1 -f -q
python -c "
import numpy as np; k = lambda x: sorted(map(bytes, x.reshape(len(x), -1)))
print('lossless (as a multiset):', k(np.load('bin10k.npy')) == k(np.load('out10k/bin10k.npy')))"
echo -n "eval 500: "; t acnzip eval bin500.npy --threads 1 -q > /dev/null
for o in set keep; do
  acnzip compress bin500.npy -o "bin500$o.acn" --order "$o" --threads 1 -f -q
  echo -n "decompress 500 $o: "; t acnzip decompress "bin500$o.acn" -o "out500$o" --threads 1 -f -q
done
