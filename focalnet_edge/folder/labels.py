"""Class labels: the one policy for what a label may hold, and the labels in class order for every target.

Every target writes labels where a character of the label can break the file: Triton's
labels.txt and `predict`'s text output hold one label per line, DeepStream's nvinfer labels
file holds them on one line separated by ';'. A line break would shift every later class by
one (class n answered with the name of class n-1), a ';' would do the same in DeepStream.
Escaping would make the name a client reads differ from the checkpoint's, and differ per
target unless every reader unescapes; so a label that a target cannot carry is refused when the
artifact is made (export and build), naming the class, and again wherever a folder's labels
are read (a manifest or ONNX file made by hand or by an older version), so no target ever
writes such a label.

Refused: control characters (Unicode category Cc: line feed, carriage return, tab, NUL, the
file/group/record separators, NEL), the line and paragraph separators (Zl, Zp: Python's
`str.splitlines` splits on all of these), and ';'. Everything else (commas, quotes, spaces,
any script) passes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from ..errors import ConfigError

#: what to do about a checkpoint's label that is refused
CHECKPOINT_FIX = "change id2label in the checkpoint's config.json"
#: what to do about a folder's label that is refused (a manifest or ONNX metadata made by hand or by an older version)
REBUILD_FIX = "rebuild the folder with focalnet-edge build"

#: characters that separate labels in a target's file, besides line breaks
SEPARATORS = {";": "DeepStream's labels file separates labels with ';'"}


def label_problem(label: str) -> str | None:
    """Why `label` cannot be carried by every target (one phrase), or None when it can."""
    for ch in label:
        if ch in SEPARATORS:
            return f"holds {ch!r} ({SEPARATORS[ch]})"
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"holds the character {ch!r} (U+{ord(ch):04X}, a line break or control character)"
    return None


def check_labels(labels: Mapping, where: str, fix: str) -> None:
    """`ConfigError` naming the first class whose label `label_problem` refuses."""
    for key in sorted(labels, key=lambda k: int(k)):
        problem = label_problem(str(labels[key]))
        if problem:
            raise ConfigError(f"{where}: the label of class {key} ({str(labels[key])!r:.80}) {problem}; Triton's labels.txt and "
                              f"predict's output hold one label per line, DeepStream's file one line split by ';': {fix}")


def ordered_labels(labels: Mapping, classes: int, where: str, fix: str) -> list[str]:
    """The labels of classes 0..classes-1 in order (a class without a label is named by its index), checked."""
    by_index = decode_labels(labels, where, fix)
    return [by_index.get(i, str(i)) for i in range(classes)]


def decode_labels(labels: Mapping, where: str, fix: str) -> dict[int, str]:
    """The labels of a manifest or an ONNX file's metadata (JSON: class index as text -> label) by class index, checked."""
    check_labels(labels, where, fix)
    return {int(k): str(v) for k, v in labels.items()}
