"""The Triton kernel behind triton:seeded. Imports triton at module level (``@triton.jit`` needs the
source at import time), so only backends/triton_backend.py imports this module, lazily, after it has
found triton and a CUDA device.

One kernel does forward and backward: ``out = r < keep ? in * scale : 0`` with ``r = tl.rand(seed,
offset)``. Forward applies it to x; backward applies it to grad_out with the same seed, so the same
Philox numbers regenerate the same mask and nothing is stored between the two passes.
"""
# No `from __future__ import annotations`: Triton reads the `tl.constexpr` annotation as an object.
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def seeded_dropout_kernel(in_ptr, out_ptr, n_elements, keep, scale, seed, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    inside = offsets < n_elements
    values = tl.load(in_ptr + offsets, mask=inside)
    random = tl.rand(seed, offsets)
    out = tl.where(random < keep, values * scale, 0.0)
    tl.store(out_ptr + offsets, out, mask=inside)


def apply_mask(source, seed: int, keep: float, scale: float):
    """A new tensor: ``source`` masked and scaled by the mask of ``seed`` (contiguous CUDA tensor in)."""
    out = source.new_empty(source.shape)
    n = source.numel()
    grid = (triton.cdiv(n, BLOCK),)
    seeded_dropout_kernel[grid](source, out, n, keep, scale, seed, BLOCK_SIZE=BLOCK)
    return out
