"""Example networks, real datasets, ONNX export helpers and the shipped demo model."""
