"""``highlighter video``: the headless twin of the Live tab; writes every mask and an overlay video."""

from __future__ import annotations

from tqdm import tqdm

from highlighter.commands.common import check_out_folder, info, report_model, resolve_checkpoint, warn
from highlighter.core.formats import load_checkpoint
from highlighter.defaults import IMAGE_SIZE
from highlighter.errors import HighlighterError
from highlighter.postprocess import check_heads, largest_box
from highlighter.preprocess import fit_size
from highlighter.results import write_boxes
from highlighter.video.pipeline import FramePipeline, Settings
from highlighter.video.sources import open_source
from highlighter.video.writer import Recorder, Writer, write_mask


def model_size(image_size, first_frame, patch: int) -> tuple[int, int]:
    """H W as given (on the patch grid); one int S: the shorter side S and the first frame's aspect ratio, as
    the Live tab; None: S = the default image size."""
    if isinstance(image_size, tuple):
        H, W = image_size
        return max(patch, H - H % patch), max(patch, W - W % patch)
    return fit_size(first_frame.shape[:2], image_size or IMAGE_SIZE, patch)


def build_predictor(args, ck, size, frames_for_auto):
    """(the predictor, a ``ChoiceWatch`` when --backend auto reused a kept choice, else None)."""
    from highlighter.runtime.predictor import ChoiceWatch, auto_predictor, make_predictor
    from highlighter.video.session import Choice, Origin

    if args.overlay == "pca" and args.backend in ("auto", "ort-fp32", "ort-int8"):
        info("backend: torch-fp32 (the pca overlay needs the patch tokens, which the ONNX graphs do not give)")
        return make_predictor("torch-fp32", ck, size, device=args.device, log=info,
                              preprocessing=args.preprocessing), None
    if args.backend == "auto":
        pred, report, cached = auto_predictor(ck, size, lambda: frames_for_auto, device=args.device,
                                              threshold=args.threshold, log=info, preprocessing=args.preprocessing)
        table = ", ".join(f"{k} {v['ms']:.1f} ms IoU {v['mean_iou']:.3f} maps r {v.get('map_r', 1.0):.4f}"
                          for k, v in report.items()
                          if isinstance(v, dict) and "ms" in v)
        choice = Choice(pred.name, tuple(pred.image_size), Origin.CACHED if cached else Origin.MEASURED, report)
        info(f"{choice.line('backend auto', earlier='an earlier run for this model, size and machine')}; "
             f"measured: {table}")
        return pred, ChoiceWatch(report) if cached else None
    try:
        return make_predictor(args.backend, ck, size, device=args.device, log=info,
                              preprocessing=args.preprocessing), None
    except (ValueError, ImportError) as e:
        raise HighlighterError(str(e)) from None


def run(args) -> int:
    if args.overlay == "pca" and args.backend in ("ort-fp32", "ort-int8"):
        raise HighlighterError(f"--overlay pca needs the patch tokens, which {args.backend} does not give: "
                               "use a torch backend")
    spec = resolve_checkpoint(args.checkpoint, "attention")  # a name, --out and the input: checked before loading
    out = check_out_folder(args.out)
    source = open_source(args.input)
    frames = iter(source)
    first = next(frames, None)
    if first is None:
        source.close()
        raise HighlighterError(source.status or f"{args.input}: no frames")
    ck = load_checkpoint(spec, num_heads=args.num_heads)
    try:  # before any backend is measured: the Live tab's second model falls back, a command refuses
        heads = check_heads(args.heads, ck.vit.num_heads)
    except ValueError as e:
        source.close()
        raise HighlighterError(f"--heads: {e}") from None
    heads = tuple(heads) if heads else None
    report_model(ck)
    size = model_size(args.image_size, first.image, ck.vit.patch_size)
    predictor, watch = build_predictor(args, ck, size, [first.image])
    info(f"model input {size[0]}x{size[1]}, backend {predictor.name}")
    pipe = FramePipeline(predictor, Settings(threshold=args.threshold, heads=heads, overlay=args.overlay,
                                             smoothing=args.smooth, box=getattr(args, "box", False)))
    (out / "masks").mkdir(parents=True, exist_ok=True)
    H0, W0 = first.image.shape[:2]
    fps = getattr(source, "fps", 0) or args.fps
    recorder = Recorder(out / "overlay.mp4", fps).open((W0 * (2 if args.overlay == "side" else 1), H0))
    writer = Writer(max_pending=16)  # PNG and mp4 encoding overlap the next frame's inference
    n, used, boxes = 0, set(), {}
    bar = tqdm(total=source.total, unit="frame", disable=None)
    try:
        for frame in _chain(first, frames):
            res = pipe.process(frame.image, frame.index, frame.name)
            t = res.timings  # the choice timed whole calls: preprocessing and model
            if watch is not None and (line := watch.add(t.get("preprocess_ms", 0.0) + t["model_ms"])):
                pipe.predictor = measure_again(args, ck, size, frame.image, line)
            name = frame.name if frame.name not in used else f"{frame.name}_{frame.index:06d}"
            used.add(name)
            boxes[name] = largest_box(res.mask, frame.image.shape[:2])  # the frame is resized whole: no crop
            writer.submit(write_mask, out / "masks" / f"{name}.png", res.mask, frame.image.shape[:2])
            writer.submit(recorder.write, res.overlay)
            n += 1
            bar.update(1)
    finally:
        writer.submit(recorder.close)
        writer.close()
        bar.close()
        source.close()
    if writer.error:
        raise HighlighterError(f"writing to {out} failed: {writer.error}")
    write_boxes(out, boxes)
    status = source.status
    if "early" in status or "failed" in status:
        warn(status)
    skipped = getattr(source, "skipped", [])
    for s in skipped[:5]:
        warn(f"skipped unreadable image {s}")
    info(f"wrote {n} masks to {out / 'masks'}, their boxes to {out / 'boxes.json'} and {out / 'overlay.mp4'}")
    return 0


def measure_again(args, ck, size, image, line):
    """A kept backend choice that runs far from its recorded time is measured again on this frame, and kept."""
    from highlighter.runtime.predictor import choose_backend, remember_choice

    info(line)
    pred, report = choose_backend(ck, size, [image], device=args.device, threshold=args.threshold, log=info,
                                  preprocessing=args.preprocessing)
    kept = remember_choice(ck, size, report, args.device, args.threshold) is not None
    info(f"backend auto: {pred.name} (measured again, {'kept' if kept else 'not kept: the model file changed'})")
    return pred


def _chain(first, rest):
    yield first
    yield from rest
