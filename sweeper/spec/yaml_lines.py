"""Where each key of a space.yaml is: its line, by key path, so every message can name it.

Read with PyYAML's safe loader (no tags that build Python objects); duplicate keys and alias
bombs are refused here, since the safe loader itself accepts both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_YAML_NODES = 100_000  # after aliases are expanded: an alias bomb stops here


class LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping key and sequence item by path."""


def key_lines(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Line of each key path. Raises ValueError for a duplicate key, or once aliases expand to
    more than MAX_YAML_NODES values (an "alias bomb" grows exponentially)."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if len(out) > MAX_YAML_NODES:
        raise ValueError(
            f"{node.start_mark.line + 1}: more than {MAX_YAML_NODES} values once its aliases "
            "(*name) are expanded"
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen and isinstance(key, yaml.ScalarNode):
                field = ".".join(map(str, (*path, key.value)))
                raise ValueError(
                    f"{line}: {field}: duplicate key (first at line {seen[key.value]})"
                )
            seen[key.value] = line
            child = (*path, key.value)
            out[child] = line
            key_lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            key_lines(item, (*path, i), out)
    return out


def line_of(path: Path, field: str) -> int:
    """The line of dotted key `field` (or of its nearest parent) in a space.yaml that loaded; a
    number is a list index (`stages.0.pruner`; a mapping key of digits finds its parent's line)."""
    node = yaml.compose(Path(path).read_text(), Loader=LineLoader)
    loc = tuple(int(part) if part.isdigit() else part for part in field.split("."))
    return nearest_line(loc, key_lines(node) if node is not None else {})


def nearest_line(loc: tuple, lines: dict[tuple, int]) -> int:
    """The line of `loc`, or of its nearest parent that has one (1: none has)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1
