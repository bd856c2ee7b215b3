PY ?= python3

.PHONY: setup demo test lint bench

setup:
	bash .ci/install

demo: setup
	$(PY) -m micoc run examples/lenet5.onnx --input examples/mnist_sample.npz -o /tmp/micoc-demo-out.npy -v
	$(PY) -m micoc opt examples/lenet5.onnx -p canonicalize -o /tmp/micoc-demo/lenet5.mir --dump-ir-after=canonicalize

test: setup
	$(PY) -m ruff check micoc tests examples bench
	$(PY) -m pytest

bench:
	$(PY) bench/frontend.py
