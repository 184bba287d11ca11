"""ONNX export of detectors and backbones, and int8 quantization of backbones.

`rgbtad.export.onnx` exports a run (`export_run`, what `rgbtad export` calls) through
`detector`, `backbone` and `quantize`; `graph_file` holds what every rgbtad ONNX file shares
(format tags, metadata, the check against PyTorch); `runtime` runs the graphs with ONNX
Runtime (`OrtDetector`, `OrtBackbone`).
"""
