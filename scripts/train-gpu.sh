#!/usr/bin/env bash
# Train acnzip's model candidates on one CUDA GPU inside a fixed time window, in parallel.
#
#   scripts/train-gpu.sh OUTDIR MINUTES [DATADIR] [DEVICE]
#
# Each job is a plain `acnzip train` (so everything it writes is what the CLI writes): batch
# 256 with the learning rate scaled by sqrt(256/64) = 2 for Adam, stopped after MINUTES of
# training with a checkpoint (in CKPTDIR, default /tmp/acnzip-ckpt: resume a job with
# `acnzip train ... --resume CKPT`), then p(z) is fitted and OUTDIR/NAME.pt written, with the
# job's log in OUTDIR/NAME.log. The small configs are launch-bound on a GPU, so several
# processes share it well. DATADIR holds (prepare it with scripts/gpu-data.py):
#   bin_train.npz bin_valid.npz           binarized MNIST train (50,000) / valid (10,000)
#   mnist_train55k.npz mnist_valid5k.npz  8-bit MNIST x_train[:55000] / x_train[55000:]
# DEVICE is cuda (default) or cpu (the CPU test of this script: `scripts/train-gpu.sh out 0.2
# DATADIR cpu` with JOBS=tiny).
# Python packages the GPU image lacks (constriction) are installed from WHEELS (.gpu/whl) if any.
set -uo pipefail
out=${1:?OUTDIR}; minutes=${2:?MINUTES}; data=${3:-.gpu/data}; device=${4:-cuda}
ckpt=${CKPTDIR:-/tmp/acnzip-ckpt}; wheels=${WHEELS:-.gpu/whl}; jobs=${JOBS:-all}
mkdir -p "$out" "$ckpt"
cd "$(dirname "$0")/.." || exit 1
py=${PYTHON:-python3}
if ! $py -c "import constriction" 2>/dev/null && ls "$wheels"/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --target /tmp/acnzip-site \
        "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/acnzip-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

job() {  # NAME ARGS...: one training run in the background
    local name=$1; shift
    $py -m acnzip train "$@" --device "$device" --max-minutes "$minutes" --epochs 1000 --threads 2 \
        --checkpoint "$ckpt/$name.ckpt" --checkpoint-every 2 -q -f -o "$out/$name.pt" \
        > "$out/$name.log" 2>&1 &
}
bin=("$data/bin_train.npz" --valid "$data/bin_valid.npz")
m8=("$data/mnist_train55k.npz" --valid "$data/mnist_valid5k.npz")
big=(--batch-size 256 --lr 2e-3)
case $jobs in
  all)
    job bin-cpu "${bin[@]}" --config cpu "${big[@]}"
    job mnist8-cpu "${m8[@]}" --config cpu "${big[@]}"
    job mnist8-b8 "${m8[@]}" --config cpu --blocks 8 "${big[@]}"
    job bin-paper "${bin[@]}" --config paper --batch-size 256 --lr 1e-3 --kl-warmup 3000 \
        --polyak-decay 0.999 --precision bf16 ;;
  tiny)
    job bin-tiny "${bin[@]}" --config tiny --batch-size 64 --lr 2e-3 --precision bf16 ;;
esac
wait
for f in "$out"/*.log; do echo "== $f"; tail -n 4 "$f"; done
ls -la "$out"
