"""The output folder: the artifact table, the manifest, the input contract, labels, ONNX and atomic file I/O,
staging and atomic replacement."""
