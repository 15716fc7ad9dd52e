"""The live graphs: ``AttentionViT`` at a fixed size, exported to ONNX.

The graph's input is raw RGB in [0, 255], NCHW float32, what every predictor's preprocessing gives (``preprocess.
fast``'s one ``cv2.dnn.blobFromImage`` pass, or ``preprocess.official_pixels``); the model normalises it itself
(``AttentionViT(pixels=True)``), and its position embedding is interpolated once (official rule) for the fixed
grid. Its outputs are the last block's class-token attention (B, heads, h, w), computed explicitly so that it
exists in the graph, and optionally the class-token features.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from highlighter.core.attention import AttentionViT


def live_model(vit, cfg, image_size: tuple[int, int]) -> AttentionViT:
    """The graphs' model: a copy of the backbone (a cast of it leaves the caller's alone) that takes pixels and
    has its positions fixed for ``image_size`` (H, W)."""
    return AttentionViT(copy.deepcopy(vit), cfg, image_size, pixels=True).eval()


def export_onnx(model: AttentionViT, path: str | Path, opset: int = 20, with_features: bool = False) -> Path:
    """Write the graph of a fixed-size, pixel-input ``AttentionViT`` with input ``image`` (1, 3, H, W) float32 in
    [0, 255] and output ``attention`` (1, heads, h, w) (plus ``features`` (1, D) with ``with_features``)."""
    if model.image_size is None or not model.pixels:
        raise ValueError("a graph has one input size and takes pixels: export an AttentionViT(vit, cfg, (H, W), "
                         "pixels=True) (``live_model``)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    H, W = model.image_size
    dummy = torch.rand(1, 3, H, W) * 255
    names = ["attention", "features"] if with_features else ["attention"]
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), kwargs={"with_features": with_features}, input_names=["image"],
                          output_names=names, opset_version=opset, dynamo=True, external_data=False, verbose=False)
    store_fp16_where_exact(tmp)
    tmp.replace(path)
    return path


def store_fp16_where_exact(path: str | Path, min_size: int = 1024) -> int:
    """Store each float32 weight that fp16 holds exactly (a model saved in fp16, as the shipped ones are) as
    fp16 followed by a Cast to float32: the graph computes the very same numbers in float32 from a file about
    half the size (ONNX Runtime folds the casts when it loads the graph). Weights that fp16 would round (the
    normalisation constants, the interpolated position embedding, any fp32 model's) stay as they are. Returns how
    many were converted; rewrites ``path`` in place."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.size < min_size:
            continue
        half = a.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), a):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + "__fp16"))
        casts.append(helper.make_node("Cast", [name + "__fp16"], [name], to=TensorProto.FLOAT, name=name + "__cast"))
    if casts:
        for node in reversed(casts):  # before every node that reads them
            graph.node.insert(0, node)
        onnx.save(model, str(path))
    return len(casts)


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """ONNX Runtime dynamic int8 quantisation (weights int8, activations quantised on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    # per-channel weights: masks agree with fp32 at 0.981 mean IoU against 0.966 per-tensor (ViT-S/16, random weights)
    quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    pre.unlink(missing_ok=True)
    return dst


def export_live(ck, path: str | Path, image_size: tuple[int, int], int8: bool = False,
                with_features: bool = False) -> Path:
    """The live graph of a checkpoint at a fixed size, written to ``path`` (int8: quantised by ONNX Runtime)."""
    from highlighter.core.build import build_attention_model

    path = Path(path)
    live = live_model(build_attention_model(ck).vit, ck.vit, image_size)
    if not int8:
        return export_onnx(live, path, with_features=with_features)
    fp32 = export_onnx(live, path.with_suffix(".fp32.onnx"), with_features=with_features)
    quantize_int8(fp32, path)
    fp32.unlink()
    return path
