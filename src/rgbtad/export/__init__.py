"""ONNX export of detectors and backbones, and int8 quantization of backbones."""
