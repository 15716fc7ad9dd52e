"""ONNX Runtime predictor: imports neither torch nor highlighter.core, so the app can run on the ORT
extra alone. Sessions are created once; on CUDA the input and output go through IO binding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from highlighter.defaults import LIVE_PREPROCESSING
from highlighter.runtime.base import Predictor, check_preprocessing


def cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtPredictor(Predictor):
    def __init__(self, onnx_path: str | Path, patch_size: int, name: str = "ort-fp32", threads: int | None = None,
                 device: str = "auto", preprocessing: str = LIVE_PREPROCESSING):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        use_cuda = device != "cpu" and cuda_available()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        self.cuda = use_cuda and self.session.get_providers()[0] == "CUDAExecutionProvider"
        shape = self.session.get_inputs()[0].shape  # [1, 3, H, W]
        out = self.session.get_outputs()[0].shape  # [1, heads, h, w]
        self.image_size = (int(shape[2]), int(shape[3]))
        self.patch_size, self.num_heads = patch_size, int(out[1])
        self.name = name + ("-cuda" if self.cuda else "")
        self.preprocessing = check_preprocessing(preprocessing)
        self._binding = self.session.io_binding() if self.cuda else None

    def run(self, blob: np.ndarray) -> np.ndarray:
        if self._binding is not None:
            self._binding.bind_cpu_input("image", blob)
            self._binding.bind_output("attention", "cpu")
            self.session.run_with_iobinding(self._binding)
            return self._binding.copy_outputs_to_cpu()[0][0]
        return self.session.run(["attention"], {"image": blob})[0][0]
