#!/bin/bash
# Issue 15 item 7: the one prepared device run (15 minutes of device time in all), as run for
# results/omniglot/gpu and results/performance (PROVENANCE.md there), with the two fixes that
# run showed were needed (marked FIXED). Before the device tool's
#   run(command="bash gpu-carry/gpu_session.sh", carry=["gpu-carry"], timeout_s=500)
# copy into the git-ignored gpu-carry/: this script, ../shared/data/omniglot28.npz and
# PROVENANCE.md (into gpu-carry/data/), ../shared/bench/reference_round.py.
set -u
t0=$(date +%s); deadline=$((t0 + 465))
export PYTHONPATH=. PYTHONUNBUFFERED=1 RABO_BENCH_DATA=$PWD/gpu-carry/data
export RABO_BENCH_REFERENCE=$PWD/gpu-carry/reference_round.py
L=$OUT/logs; mkdir -p "$L"
# the package's suites and baselines, as an install maps them (pyproject's package-dir)
ln -sfn ../suites rabo_bench/suites && ln -sfn ../baselines rabo_bench/baselines
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/gpu.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0], torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$OUT/gpu.txt"
git log -1 --format='commit %H' 2>/dev/null | tee -a "$OUT/gpu.txt"
# 1. CUDA tests: the smoke presets on CUDA against the CPU (Omniglot only: CIFAR-10's 170 MB
#    archive cannot travel), and the one-pass episodes
stamp "tests start"
# FIXED: tests/gpu computed both suites' CPU tables up front, so without CIFAR-10 it failed
# at setup; it now computes a suite's table at first use
timeout -k 5 150 python3 -m pytest -q -p no:cacheprovider -k "not cifar" \
  tests/gpu tests/unit/test_episodes_in_one_pass.py > "$L/tests.log" 2>&1
stamp "tests rc $?"
# 2. The Omniglot round next to reference_round.py, both sizes, on CUDA
timeout -k 5 130 env RABO_BENCH_BENCH=1 python3 -m pytest -q -p no:cacheprovider \
  tests/benchmarks/test_fewshot_speed.py --benchmark-enable \
  --benchmark-json="$OUT/benchmark-gpu.json" > "$L/bench.log" 2>&1
stamp "bench rc $?"
timeout -k 5 40 python3 gpu-carry/reference_round.py --net resnet12 --ways 5 --shots 5 --episodes 16 \
  --inner-steps 10 --neumann-terms 5 --local-steps 10 --device cuda --precision tf32 \
  --channels-last --reps 3 --out "$L/reference-tf32-cl.json" > "$L/reference.log" 2>&1
stamp "reference rc $?"
# 3. The gpu preset, 5w5s, RABO first; SIGTERM at the deadline keeps what finished
left=$(( deadline - $(date +%s) ))
stamp "preset start, ${left} s left"
timeout -s TERM -k 20 "$left" python3 -m rabo_bench.cli run omniglot --preset gpu --settings 5w5s \
  --channels-last --algorithms rabo,static,fedmbo,rafbo,fedrolex,fiarse,oap,protonet,maml \
  --no-mlflow --no-progress --out omniglot-gpu > "$L/omniglot-gpu.log" 2>&1
stamp "preset rc $?"
# FIXED: without the checkpoints (ResNet12 state), which made the archive too large to return
tar czf "$OUT/omniglot-gpu.tar.gz" --exclude=checkpoints omniglot-gpu
tar czf "$OUT/logs.tar.gz" -C "$OUT" logs && rm -rf "$L"
stamp "done"
