"""Deployment exports and their checks: an ONNX graph (also what the ONNX Runtime
backend times) and a standalone ``torch.export`` program, each checked against PyTorch."""
