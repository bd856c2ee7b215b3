"""The reference interpreter (numpy): the semantic definition of every op."""

from micoc.interp.kernels import KERNELS, kernel
from micoc.interp.reference import batch_safe, bind_inputs, run

__all__ = ["KERNELS", "batch_safe", "bind_inputs", "kernel", "run"]
