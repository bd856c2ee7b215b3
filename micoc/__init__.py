"""micoc: a compiler for mixed-precision quantized neural networks on edge hardware."""

__version__ = "0.1.0"
