"""Argument types shared by the command-line tools (torch-free: parsers are built before any
heavy import)."""

import argparse


def input_size(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH (e.g. 240x320) -> (height, width), both at least 32."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, got {text!r}") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"input size must be at least 32x32, got {text!r}")
    return h, w
