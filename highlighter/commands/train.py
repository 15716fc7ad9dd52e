"""``highlighter train dino|mae``: pretraining on folders of unlabeled images."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields, replace
from pathlib import Path

from highlighter.config import PRESETS, DinoCfg, MaeCfg, epochs_of, parse_span
from highlighter.errors import HighlighterError

CONFIGS = {"dino": DinoCfg, "mae": MaeCfg}


def add_config_flags(p: argparse.ArgumentParser, cls) -> None:
    """One flag per hyperparameter, default SUPPRESS so that presets and --config can fill the gaps."""
    group = p.add_argument_group("hyperparameters (official defaults; a --preset or --config overrides them)")
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        helptext = f"{f.metadata.get('help', '')} (default: {default})"
        if f.metadata.get("span"):
            group.add_argument(flag, type=_span_type, default=argparse.SUPPRESS, metavar="EPOCHS|N%",
                               help=helptext)
        elif isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        elif isinstance(default, tuple):
            group.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), default=argparse.SUPPRESS,
                               help=helptext)
        else:
            group.add_argument(flag, type=type(default), default=argparse.SUPPRESS, help=helptext)


def _span_type(text: str):
    try:
        return parse_span(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_config(kind: str, args: argparse.Namespace):
    """official defaults < --preset < --config FILE < flags."""
    cls = CONFIGS[kind]
    values: dict = {}
    if args.preset:
        values.update(PRESETS[kind][args.preset])
    if args.config:
        try:
            loaded = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as e:
            raise HighlighterError(f"--config {args.config}: cannot read a JSON object ({e})") from None
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(loaded) - names)
        if unknown:
            raise HighlighterError(f"--config {args.config}: unknown {kind} settings: {', '.join(unknown)}")
        values.update(loaded)
    for f in fields(cls):
        if hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    cfg = cls.from_dict(values)
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise HighlighterError("--batch-size and --epochs must be at least 1")
    if getattr(args, "resume", False):
        return cfg  # the run's stored configuration applies
    typed = set(loaded if args.config else ()) | {n for n in ("warmup_epochs", "warmup_teacher_temp_epochs")
                                                  if hasattr(args, n)}
    short = {}
    for name in ("warmup_epochs", "warmup_teacher_temp_epochs"):
        value = getattr(cfg, name, 0)
        if epochs_of(value, cfg.epochs) > cfg.epochs:
            flag = "--" + name.replace("_", "-")
            if name in typed:
                raise HighlighterError(f"{flag} {value} is longer than --epochs {cfg.epochs}")
            short[name] = cfg.epochs // 10 if name == "warmup_teacher_temp_epochs" else round(cfg.epochs / 10, 3)
            preset = PRESETS[kind].get(args.preset or "", {})
            where = f"the {args.preset} preset's" if name in preset else "the default"
            print(f"note: {where} {flag} {value} does not fit in {cfg.epochs} epoch(s); using {short[name]:g} "
                  "(a tenth of the run)", flush=True)
    return replace(cfg, **short) if short else cfg


def run(args) -> int:
    from highlighter.train.pretrain import run as pretrain

    cfg = build_config(args.kind, args)
    if args.resume and (args.preset or args.config or len(_explicit(args)) > int(hasattr(args, "epochs"))):
        print("note: --resume continues with the run's stored configuration (only --epochs applies: a larger one "
              "extends the run)", flush=True)
    init = None
    if args.init:
        from highlighter.commands.common import resolve_checkpoint

        init = resolve_checkpoint(args.init, "attention" if args.kind == "dino" else "mae")
    return pretrain(args.kind, cfg, args.data, args.out, device=args.device, resume=args.resume, events=args.events,
                    log_every=args.log_every, save_every_minutes=args.save_every_minutes,
                    save_every_steps=args.save_every_steps, preview_every=args.preview_every,
                    preview_images=args.preview_images, max_steps=args.max_steps,
                    probe_every_minutes=getattr(args, "probe_every_minutes", None),
                    probe_data=getattr(args, "probe_data", None), probe_sizes=getattr(args, "probe_sizes", None),
                    probe_knn=getattr(args, "probe_knn", None),
                    epochs=getattr(args, "epochs", None) if args.resume else None, init=init,
                    explicit_arch={k: getattr(args, k) for k in ("arch", "patch_size") if hasattr(args, k)},
                    max_minutes=args.max_minutes, keep_teachers=getattr(args, "keep_teachers", None))


def _explicit(args) -> list[str]:
    """The hyperparameters typed on the command line (flags default to SUPPRESS)."""
    return [f.name for f in fields(CONFIGS[args.kind]) if hasattr(args, f.name)]
