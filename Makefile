PY ?= python3

.PHONY: setup demo test lint bench

setup:
	bash .ci/install

DEMO := build/demo

demo: setup
	$(PY) -m micoc inspect examples/lenet5.onnx
	$(PY) -m micoc quantize examples/lenet5.onnx --calib examples/mnist_sample.npz --bits w4a8 -o $(DEMO)/lenet5_w4a8.mir -v
	$(PY) -m micoc run $(DEMO)/lenet5_w4a8.mir --input examples/mnist_sample.npz -o $(DEMO)/logits.npy -v
	$(PY) -c "import numpy as np; y = np.load('examples/mnist_sample.npz')['y']; p = np.load('$(DEMO)/logits.npy').argmax(1); \
	print('labels     ', y); print('W4A8 int IR', p); print(f'accuracy {(p == y).mean():.0%} on {len(y)} MNIST test images')"

test: setup
	$(PY) -m ruff check micoc tests examples bench
	$(PY) -m pytest

bench:
	$(PY) bench/frontend.py --write
	$(PY) bench/ptq_accuracy.py --write
