"""Strict matching of a checkpoint's tensors against the names/shapes a model expects.

Example::

    >>> import numpy as np
    >>> from converters.state_dict import match_state_dict
    >>> expected = {"shared.weight": (8, 4), "encoder.embed_tokens.weight": (8, 4)}
    >>> tensors = {"shared.weight": np.zeros((8, 4), np.float32)}   # tied copy dropped
    >>> matched = match_state_dict(expected, tensors,
    ...                            aliases={"encoder.embed_tokens.weight": ["shared.weight"]})
    >>> sorted(matched)
    ['encoder.embed_tokens.weight', 'shared.weight']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["match_state_dict"]


def _normalise_shape(shape: Any) -> tuple[int | None, ...]:
    # Accepts tuples, lists, numpy/TF shapes; None (or -1) means "any size" for that axis.
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return tuple(None if d is None or d == -1 else int(d) for d in dims)


def _shape_matches(expected: tuple[int | None, ...], found: tuple[int, ...]) -> bool:
    return len(expected) == len(found) and all(e is None or e == f for e, f in zip(expected, found))


def _same_tensor(a: Any, b: Any) -> bool:
    if a is b:
        return True
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def match_state_dict(
    expected: Mapping[str, Sequence[int]],
    tensors: Mapping[str, Any],
    aliases: Mapping[str, Iterable[str]] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Return ``{expected_name: tensor}`` or raise ONE ``ValueError`` listing every problem.

    * ``expected``: name -> shape the model needs (``None``/-1 in a shape = any size).
    * ``tensors``: what the checkpoint holds (e.g. from ``read_checkpoint``).
    * ``aliases``: name -> alternative checkpoint names to use when ``name`` itself is
      absent, in order. Typical use: tied weights, which transformers saves under only
      one of their names (``shared.weight`` for mT5's ``encoder.embed_tokens.weight``).
    * ``source``: a label for error messages (e.g. the checkpoint path).

    The error lists all missing names (with the aliases tried), all unexpected names,
    and all shape mismatches as ``name: expected (...), found (...)``. A checkpoint
    tensor that is only an alias of an expected name which is itself present counts as
    used when it holds the same values (a redundant tied copy); with different values it
    is reported as a conflict, since the model would silently ignore it.

    Example::

        >>> match_state_dict({"w": (2, 2)}, {"w": np.zeros((3, 2)), "extra": np.zeros(1)})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: checkpoint does not match the model: 1 unexpected, 1 shape mismatch(es)
        ...
    """
    aliases = {name: list(alts) for name, alts in (aliases or {}).items()}
    unknown = sorted(set(aliases) - set(expected))
    if unknown:
        raise ValueError(f"aliases given for names the model does not expect: {unknown}")

    matched: dict[str, Any] = {}
    chosen: dict[str, str] = {}  # expected name -> checkpoint name it was taken from
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[tuple[str, str, tuple, tuple]] = []
    for name, raw_shape in expected.items():
        want = _normalise_shape(raw_shape)
        source_name = next((n for n in [name, *aliases.get(name, [])] if n in tensors), None)
        if source_name is None:
            missing.append(name)
            continue
        used.add(source_name)
        chosen[name] = source_name
        found = tuple(np.shape(tensors[source_name]))
        if not _shape_matches(want, found):
            mismatched.append((name, source_name, want, found))
            continue
        matched[name] = tensors[source_name]

    # Alias names present in the checkpoint but not needed (an earlier candidate was
    # taken): harmless duplicates of tied weights if equal, otherwise a real conflict.
    conflicts: list[tuple[str, str]] = []
    for name, alternatives in aliases.items():
        for alternative in alternatives:
            if alternative in tensors and alternative not in used and alternative not in expected:
                used.add(alternative)
                if not _same_tensor(tensors[alternative], tensors[chosen[name]]):
                    conflicts.append((alternative, chosen[name]))
    unexpected = sorted(set(tensors) - used)

    if not (missing or unexpected or mismatched or conflicts):
        return matched

    counts = [f"{len(items)} {label}" for items, label in (
        (missing, "missing"), (unexpected, "unexpected"), (mismatched, "shape mismatch(es)"),
        (conflicts, "conflicting alias(es)")) if items]
    lines = [f"checkpoint{f' {source}' if source else ''} does not match the model: {', '.join(counts)}"]
    if missing:
        lines.append(f"missing ({len(missing)}):")
        for name in sorted(missing):
            tried = aliases.get(name)
            lines.append(f"  {name}" + (f" (also tried: {', '.join(tried)})" if tried else ""))
    if unexpected:
        lines.append(f"unexpected ({len(unexpected)}):")
        lines.extend(f"  {name} {tuple(np.shape(tensors[name]))}" for name in unexpected)
    if mismatched:
        lines.append(f"shape mismatches ({len(mismatched)}):")
        for name, source_name, want, found in sorted(mismatched):
            shown_want = tuple("?" if d is None else d for d in want)
            via = f" (from {source_name})" if source_name != name else ""
            lines.append(f"  {name}{via}: expected {shown_want}, found {found}")
    if conflicts:
        lines.append(f"conflicting aliases ({len(conflicts)}): present with values different from the name they alias:")
        lines.extend(f"  {alternative} != {name}" for alternative, name in sorted(conflicts))
    raise ValueError("\n".join(lines))
