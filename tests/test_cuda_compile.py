"""Compile-check the CUDA kernels with nvcc (no GPU and no torch CUDA headers needed:
the .cu files include CUDA headers only). Skipped where nvcc is not on PATH."""
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
CU_FILES = sorted(CSRC.glob("*.cu"))
ARCHS = ["sm_90", "sm_80"]  # Hopper, and one older arch (Ampere)
NVCC = shutil.which("nvcc")
# What torch.utils.cpp_extension passes to nvcc: no implicit half/bfloat16 conversions.
TORCH_NVCC_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
]


def test_there_are_cuda_sources():
    assert CU_FILES, f"no .cu files in {CSRC}"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(cu, arch, tmp_path):
    cc = arch.split("_")[1]
    cmd = [
        NVCC, "-c", str(cu), "-o", str(tmp_path / (cu.stem + ".o")), "-std=c++17", "-O3",
        f"-gencode=arch=compute_{cc},code={arch}", "-I", str(CSRC), "-Xcompiler", "-Wall",
        *TORCH_NVCC_DEFINES,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stderr}{proc.stdout}"
    assert (tmp_path / (cu.stem + ".o")).stat().st_size > 0


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
def test_cuda_sources_include_no_torch_headers():
    for f in [*CU_FILES, CSRC / "gp_cuda.h"]:
        for line in f.read_text().splitlines():
            if line.strip().startswith("#include"):
                assert not any(k in line for k in ("torch", "ATen", "c10")), f"{f.name}: {line}"
