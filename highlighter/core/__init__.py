"""Torch + timm only: no Qt, no onnxruntime, no camera."""
