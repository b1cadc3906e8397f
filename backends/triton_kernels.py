"""The Triton kernel behind triton:seeded. Imports triton at module level (``@triton.jit`` needs the
source at import time), so only backends/triton_backend.py imports this module, lazily, after it has
found triton and a device (a CUDA GPU, or Triton's interpreter with ``TRITON_INTERPRET=1``).

One kernel does forward and backward: ``out = r < keep ? in * scale : 0`` with ``r = tl.rand(seed,
offset)``. Forward applies it to x; backward applies it to grad_out with the same seed, so the same
Philox numbers regenerate the same mask and nothing is stored between the two passes. The random
number of an element depends on its flat offset only, never on the block size, so the GPU's blocks
of 1024 and the interpreter's larger blocks draw the same mask (tests/test_triton_interpreter.py).
"""
# No `from __future__ import annotations`: Triton reads the `tl.constexpr` annotation as an object.
import os

import triton
import triton.language as tl

BLOCK = 1024
INTERPRETED_BLOCK = 65536
"""Under the interpreter every program is a Python loop over NumPy ops, so the cost is per program,
not per element: 65,536 elements took 0.93 s in blocks of 1024 and 0.04 s in one block of 65,536
(triton 3.7.1, torch 2.13.0+cpu, a busy 2-core machine). The mask is the same either way."""


def interpreted() -> bool:
    """Whether ``@triton.jit`` kernels run in Triton's interpreter (read at import, as triton does)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def seeded_dropout_kernel(in_ptr, out_ptr, n_elements, keep, scale, seed, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    inside = offsets < n_elements
    values = tl.load(in_ptr + offsets, mask=inside)
    random = tl.rand(seed, offsets)
    out = tl.where(random < keep, values * scale, 0.0)
    tl.store(out_ptr + offsets, out, mask=inside)


def apply_mask(source, seed: int, keep: float, scale: float, block: int | None = None):
    """A new tensor: ``source`` masked and scaled by the mask of ``seed`` (a contiguous tensor: CUDA, or
    CPU under the interpreter). ``block``: the elements per program (a power of two); default per mode."""
    block = block or (INTERPRETED_BLOCK if interpreted() else BLOCK)
    out = source.new_empty(source.shape)
    n = source.numel()
    grid = (triton.cdiv(n, block),)
    seeded_dropout_kernel[grid](source, out, n, keep, scale, seed, BLOCK_SIZE=block)
    return out
