#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine (benchmarks/README.md, "GPU"): the `gpu`
# tests; the V1 16 x 8192 iteration of the pre-optimisation tree against this one (fp32, bf16,
# fp16), interleaved; the training-step rows per budget; a `small` search of 4 trials at 0.25 GPU
# each and the same search's first trial alone, with nvidia-smi sampled throughout.
#
#   bash benchmarks/gpu_check.sh OUT [SEARCH_STEPS]
#
# The image has torch but not the rest of the stack: .whl/site312.tar.xz (the other packages,
# unpacked for Python 3.12) and .whl/pesq-src (built there) are carried beside the tree, and
# .ref6bfb109/ is `git archive 6bfb109 harness`, the tree before the optimisations.  Every phase
# is cut at a shared deadline (DEADLINE_S, default 540 s); whatever ran is packed into
# OUT/gpu_check.tgz (logs, nvidia-smi samples, the searches without checkpoints) on any exit.
set -u
dest=$(realpath -m "${1:?usage: gpu_check.sh OUT [SEARCH_STEPS]}")
steps=${2:-1000}
deadline=${DEADLINE_S:-540}
mkdir -p "$dest" /tmp/gpu-check/results
out=/tmp/gpu-check
trap 'tar -czf "$dest/gpu_check.tgz" --exclude="*.pt" --exclude="checkpoint_*" -C /tmp gpu-check' EXIT
phase() { echo "=== $SECONDS s: $*"; }
until_deadline() { # the phase's own cap, or what is left before the deadline if less
    local left=$((deadline - SECONDS))
    echo $((left < $1 ? (left > 1 ? left : 1) : $1))
}

phase "stack"
if [ -f .whl/site312.tar.xz ] && ! python3 -c "import ray" 2>/dev/null; then
    mkdir -p /tmp/site && tar -xJf .whl/site312.tar.xz -C /tmp/site --strip-components=1
    python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/site \
        .whl/pesq-src 2>&1 | tail -3
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export GAN_HARNESS_CACHE=${GAN_HARNESS_CACHE:-/tmp/gan-cache}
nvidia-smi -L
python3 -c "import torch, ray, optuna, pesq, pandas, pyarrow; print('torch', torch.__version__, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA', '| ray', ray.__version__, '| optuna', optuna.__version__, '| pandas', \
pandas.__version__, '| pyarrow', pyarrow.__version__)" || exit 1
python3 -c "from harness.audio.corpus import ensure_corpus; ensure_corpus(progress=False)"

phase "gpu tests"
timeout "$(until_deadline 150)" python3 -m pytest -q -m gpu -p no:cacheprovider tests \
    >"$out/gpu_tests.log" 2>&1
tail -12 "$out/gpu_tests.log"

phase "V1 16 x 8192 iteration: before the optimisations (6bfb109) against this tree"
timeout "$(until_deadline 120)" python3 benchmarks/train_step.py --compare .ref6bfb109 \
    --budgets paper --precisions fp32 --arm precision=bf16 --arm precision=fp16 \
    --repeats 6 --warmup 2 >"$out/train_step_compare.log" 2>&1
tail -18 "$out/train_step_compare.log"

sample_gpu() { # nvidia-smi every 200 ms into $1, every process's memory each second into $2
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 200 >"$1" &
    samplers=$!
    nvidia-smi --query-compute-apps=timestamp,pid,used_memory --format=csv,noheader,nounits \
        -lms 1000 >"$2" &
    samplers="$samplers $!"
}
search() { # search NAME TRIALS GPUS_PER_TRIAL CAP_S
    sample_gpu "$out/smi_$1.csv" "$out/smi_apps_$1.csv"
    timeout "$(until_deadline "$4")" python3 run.py search hifigan --budget small --space \
        "$out/space.yaml" --trials "$2" --gpus-per-trial "$3" --cpus-per-trial 4 --name "$1" \
        --results "$out/results" --quiet >"$out/search_$1.log" 2>&1
    echo "exit $?"
    kill $samplers 2>/dev/null
    wait $samplers 2>/dev/null
    tail -6 "$out/search_$1.log"
    python3 run.py leaderboard "$1" --results "$out/results" --wide >"$out/leaderboard_$1.txt" 2>&1
    head -20 "$out/leaderboard_$1.txt"
    python3 benchmarks/gpu_usage.py "$out/smi_$1.csv" "$out/results/$1"
}
python3 - "$steps" >"$out/space.yaml" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open("search_spaces/hifigan.yaml"))
doc["space"]["batches"] = int(sys.argv[1])  # the small budget's validation every 500 batches stays
print(yaml.safe_dump(doc, sort_keys=False))
EOF
phase "search: 4 small trials at 0.25 GPU each, $steps batches"
search four 4 0.25 240
phase "search: its first trial (the paper configuration) alone on the GPU"
search one 1 1 120

phase "training-step rows per budget"
timeout "$(until_deadline 100)" python3 benchmarks/train_step.py --budgets smoke,small,paper \
    --precisions fp32,bf16 --repeats 3 --warmup 2 >"$out/train_step.log" 2>&1
tail -12 "$out/train_step.log"
phase "done"
