"""`segmentation-ros-generate`: write a synthetic data set (COCO-panoptic + instances + cameras).

    segmentation-ros-generate --out DIR --num N [--seed-start S] [--width W --height H]
                              [--scenes mixed|indoor|outdoor] [--format jpg|png] [--quality Q]
                              [--min-area A] [--no-effects] [--workers K] [--preview P]

    segmentation-ros-generate --sequence --out DIR --num N [--seed-start S] [--frames F]
                              [--rate HZ] [--kind drive|walk|mixed] [--format jpg|png] ...

Image i has seed S + i (its image id). The layout of DIR is described in
`segmentation_ros.data.synthetic_io`; `--preview P` also writes the first P images beside their
colourised panoptic maps to DIR/preview/. Prints a summary and, last, one JSON line
{"images", "segments", "instances", "seconds", "ms_per_image", "out"}.
With --sequence, N camera sequences (seeds S..S+N-1) of F frames at HZ are written to
DIR/<seed:08d>/ as `segmentation_ros.data.sequence_io` describes; the last line is
{"sequences", "frames", "seconds", "ms_per_frame", "out"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segmentation_ros.data.synthetic import colorize_panoptic, generate_scene, write_dataset

_SCENES = {"mixed": None, "indoor": True, "outdoor": False}


def _int_in(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segmentation-ros-generate",
        description="Generate synthetic ground-robot scenes with exact panoptic annotations.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--num", required=True, type=_int_in(1), help="number of images (>= 1)")
    p.add_argument("--seed-start", default=0, type=_int_in(0), help="seed of the first image")
    p.add_argument("--width", default=640, type=_int_in(1, 8192), help="image width, pixels")
    p.add_argument("--height", default=480, type=_int_in(1, 8192), help="image height, pixels")
    p.add_argument("--scenes", default="mixed", choices=sorted(_SCENES), help="scene kinds")
    p.add_argument("--format", default="jpg", choices=("jpg", "png"), help="image file format")
    p.add_argument("--quality", default=95, type=_int_in(1, 100), help="JPEG quality")
    p.add_argument("--min-area", default=20, type=_int_in(0), help="drop smaller segments")
    p.add_argument("--no-effects", action="store_true", help="no blur / noise / exposure")
    p.add_argument("--workers", default=1, type=_int_in(1), help="worker processes")
    p.add_argument("--preview", default=0, type=_int_in(0), help="preview PNGs to write")
    g = p.add_argument_group("sequences")
    g.add_argument("--sequence", action="store_true", help="write camera sequences instead")
    g.add_argument("--frames", default=150, type=_int_in(1), help="frames per sequence")
    g.add_argument("--rate", default=10.0, type=_rate, help="frame rate, Hz")
    g.add_argument("--kind", default="mixed", choices=("drive", "walk", "mixed"))
    return p


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v <= 1000:
        raise argparse.ArgumentTypeError(f"must be in (0, 1000] Hz, got {v}")
    return v


def _sequences(args: argparse.Namespace) -> int:
    from segmentation_ros.data.sequence_io import write_sequence
    from segmentation_ros.data.sequence_world import build_world

    t0 = time.perf_counter()
    kind = None if args.kind == "mixed" else args.kind
    for seed in range(args.seed_start, args.seed_start + args.num):
        world = build_world(
            seed,
            kind=kind,
            num_frames=args.frames,
            rate=args.rate,
            width=args.width,
            height=args.height,
            effects=not args.no_effects,
        )
        try:
            root = write_sequence(
                args.out,
                world,
                image_format=args.format,
                jpeg_quality=args.quality,
                min_area=args.min_area,
            )
        except (OSError, ValueError) as e:
            print(f"segmentation-ros-generate: {e}", file=sys.stderr)
            return 1
        print(
            f"{world.kind} sequence {seed}: {world.num_frames} frames, "
            f"{len(world.agents)} agents -> {root}"
        )
    dt = time.perf_counter() - t0
    n = args.num * args.frames
    print(
        json.dumps(
            {
                "sequences": args.num,
                "frames": n,
                "seconds": round(dt, 3),
                "ms_per_frame": round(1000 * dt / n, 2),
                "out": str(args.out),
            }
        )
    )
    return 0


def _previews(args: argparse.Namespace) -> None:
    out = args.out / "preview"
    out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seed_start, args.seed_start + min(args.preview, args.num)):
        scene = generate_scene(
            seed,
            width=args.width,
            height=args.height,
            indoor=_SCENES[args.scenes],
            min_area=args.min_area,
            effects=not args.no_effects,
        )
        both = np.concatenate([scene.image, colorize_panoptic(scene.id_map, scene.segments)], 1)
        cv2.imwrite(str(out / f"{seed:08d}.png"), np.ascontiguousarray(both[..., ::-1]))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sequence:
        return _sequences(args)
    seeds = range(args.seed_start, args.seed_start + args.num)
    t0 = time.perf_counter()
    try:
        ds = write_dataset(
            args.out,
            seeds,
            width=args.width,
            height=args.height,
            indoor=_SCENES[args.scenes],
            image_format=args.format,
            jpeg_quality=args.quality,
            min_area=args.min_area,
            effects=not args.no_effects,
            workers=args.workers,
        )
    except (OSError, ValueError) as e:
        print(f"segmentation-ros-generate: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    if args.preview:
        _previews(args)
    print(
        f"{ds.num_images} images, {ds.num_segments} segments, {ds.num_instances} instances "
        f"in {dt:.1f} s ({1000 * dt / ds.num_images:.1f} ms/image) -> {ds.root}"
    )
    print(f"  {ds.panoptic_json}\n  {ds.instances_json}\n  {ds.cameras_json}")
    summary = {
        "images": ds.num_images,
        "segments": ds.num_segments,
        "instances": ds.num_instances,
        "seconds": round(dt, 3),
        "ms_per_image": round(1000 * dt / ds.num_images, 2),
        "out": str(ds.root),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
