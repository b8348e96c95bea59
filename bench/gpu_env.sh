# Sourced by the prepared GPU scripts (bench/gpu_*_session.sh) in the checkout's root, with the output folder as $1:
# the wheels of .gpu/wheels installed beside the machine's packages (it has no network and lacks hydra-core,
# omegaconf, antlr4 and lark), the data copied to .gpu/ used as the shared data, and the machine described in
# $1/machine.txt.
if ls .gpu/wheels/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .gpu/wheels/*.whl 2>&1 | tail -2
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
[ -f .gpu/cifar10-jpeg.tar.xz ] && export AUTOML_SHARED_DATA=$PWD/.gpu
export AUTOML_CODEGEN_CACHE=${AUTOML_CODEGEN_CACHE:-/tmp/automl-cache} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda',
      torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  nproc; } > "$1/machine.txt" 2>&1
cat "$1/machine.txt"
