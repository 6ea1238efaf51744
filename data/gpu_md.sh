#!/bin/bash
# Kept for a session with a lent GPU (none was lent when it was written). Before the device call, here:
#   mkdir -p .gpu/pdb && cp data/gpu_md.sh data/make_md.py .gpu/ && cp -r python .gpu/python
#   gzip -c ../shared/data/pdb_experimental/{2JOF,1FME,2F4K,2HBB,1GB1,5AWL,3DMV}.pdb into .gpu/pdb/NAME.pdb.gz
#   pip download (cp312 manylinux) openmm==8.6.1 openmm-cuda-13==8.6.1 mdtraj==1.11.1.post2 into .whl/, pdbfixer==1.12.0 as a wheel
#   (device README: /work/.library/device/README.md); then run(command="bash .gpu/gpu_md.sh 5.5 390 2>&1 | tee $OUT/log.txt",
#   carry=[".gpu", ".whl"], timeout_s=450) and `python data/make_md.py collect RUNS --tag gpu` on the unpacked results.
# Device script: 300 K implicit-solvent MD of small proteins with `mdllm simulate` on CUDA, all systems
# concurrently (one process each). Writes one tar.gz per system and log.txt under $OUT.
# Usage (repo root on the device): bash .gpu/run_md.sh MAX_MINUTES HARD_SECONDS 2>&1 | tee $OUT/log.txt
MAXMIN=${1:-5.5}
HARD=${2:-390}
PY=${PY:-python3}
export PLATFORM=${PLATFORM:-CUDA}
t0=$(date +%s)
echo "== start $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/python PYTHONUNBUFFERED=1
# CUDA 13 libs of the OpenMM plugin (libnvrtc.so.13, libcufft.so.12): from the image's nvidia wheels / toolkit
NV=$($PY -c "import nvidia; print(' '.join(nvidia.__path__))" 2>/dev/null)
LIBDIRS=$(find $NV /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib \( -name 'libnvrtc.so.13*' -o -name 'libcufft.so.12*' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH=${LIBDIRS}${LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
$PY - <<'EOF'
import numpy, openmm, mdtraj, pdbfixer
print("numpy", numpy.__version__, "openmm", openmm.__version__, "mdtraj", mdtraj.__version__)
names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
print("platforms", names)
for f in openmm.Platform.getPluginLoadFailures():
    if "OpenCL" not in f:
        print("plugin failure:", f)
import os, sys
sys.exit(0 if os.environ.get("PLATFORM", "CUDA") in names else 3)
EOF
[ $? = 0 ] || { echo "platform $PLATFORM missing: stop"; exit 3; }
SHARED=${SHARED:-/work/shared/data/pdb_experimental}
RUNS=${RUNS:-/work/runs-gpu}
mkdir -p $SHARED || { SHARED=/tmp/shared/data/pdb_experimental; mkdir -p $SHARED; }
mkdir -p $RUNS || { RUNS=/tmp/runs-gpu; mkdir -p $RUNS; }
for f in .gpu/pdb/*.pdb.gz; do gunzip -c "$f" > $SHARED/$(basename "$f" .gz); done
$PY .gpu/make_md.py simulate-gpu $RUNS --shared $(dirname $SHARED) --minutes $MAXMIN --hard-seconds $HARD --pack $OUT --platform $PLATFORM &
MPID=$!
for i in $(seq 90); do sleep 1; kill -0 $MPID 2>/dev/null || break; done
echo "== after $(( $(date +%s) - t0 )) s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
tail -qn 1 $RUNS/*.log
wait $MPID
ls -la $OUT
echo "== end after $(( $(date +%s) - t0 )) s"
