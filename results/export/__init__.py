"""``python -m results.export``: a trained net re-parameterised and written as ONNX
and as a ``torch.export`` program, each checked against PyTorch."""
