"""sphana python bridge: thin child process for onnx / onnxruntime tooling.

Run as ``python -m sphana_bridge <command> --request '<json>'``; see PROTOCOL.md.
"""

PROTOCOL_VERSION = 1
