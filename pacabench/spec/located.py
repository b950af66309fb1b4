"""A suite file's YAML as plain data, with the line of every key and item kept, so that each
problem can be reported as one line ``file:line: message`` (``SuiteError``).

Only plain data is built: mappings, lists and str/int/float/bool/null scalars; any other tag
(``!!python/...``, ``!foo``), an alias that contains itself, or an alias expansion past
``MAX_NODES`` values is refused, naming the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import PacabenchError

__all__ = ["SuiteError", "Located", "read_yaml", "decode", "MAX_SUITE_BYTES", "MAX_NODES"]

MAX_SUITE_BYTES = 1 << 20  # a suite is a few hundred bytes; refuse a document past 1 MiB
MAX_NODES = 100_000  # built values, aliases expanded: bounds an alias bomb (billion laughs)
SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


class SuiteError(PacabenchError):
    """A suite file that does not validate: one line, with file and line number."""


class Located:
    """Keeps the line of every mapping key / sequence item while building plain objects.

    Messages raised while building hold ``{file}``; ``read_yaml`` puts the file name in.
    """

    def __init__(self):
        self.lines: dict[tuple, int] = {}
        self.built = 0
        self.open: set[int] = set()  # ids of the collections being built (a cycle = recursive alias)
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: tuple = ()) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        self.built += 1
        if self.built > MAX_NODES:
            raise SuiteError(f"{{file}}:{line}: suite too large: more than {MAX_NODES} values (alias bomb?)")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, line)
        if id(node) in self.open:
            raise SuiteError(f"{{file}}:{line}: recursive alias (a value that contains itself)")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if node.tag != "tag:yaml.org,2002:seq":
                raise SuiteError(f"{{file}}:{line}: YAML tag {node.tag!r} is not allowed")
            return [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        if node.tag != "tag:yaml.org,2002:map":
            raise SuiteError(f"{{file}}:{node.start_mark.line + 1}: YAML tag {node.tag!r} is not allowed")
        out = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                raise SuiteError(f"{{file}}:{k_node.start_mark.line + 1}: a key must be a plain name")
            key = k_node.value
            if key in out:
                raise SuiteError(f"{{file}}:{k_node.start_mark.line + 1}: duplicate key '{key}'")
            out[key] = self.build(v_node, path + (key,))
            self.lines[path + (key,)] = k_node.start_mark.line + 1  # errors point at the key
        return out

    def scalar(self, node: yaml.ScalarNode, line: int) -> Any:
        if node.tag not in SCALAR_TAGS:
            raise SuiteError(f"{{file}}:{line}: YAML tag {node.tag!r} is not allowed (plain values only)")
        if node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"):
            return node.value  # a date stays the text it was written as
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            raise SuiteError(f"{{file}}:{line}: bad value {node.value[:40]!r} for {node.tag}") from None

    def line(self, path: tuple) -> int:
        """The line of ``path`` (keys and item indices), else of its nearest enclosing value."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def decode(raw: bytes, filename: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SuiteError(f"{filename}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None


def read_yaml(text: str, filename: str) -> tuple[Any, Located]:
    """The document's plain data and the lines of its values; any problem is a ``SuiteError``."""
    if len(text) > MAX_SUITE_BYTES:
        raise SuiteError(f"{filename}:1: suite file too large (over {MAX_SUITE_BYTES} bytes)")
    loc = Located()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise SuiteError("{file}:1: empty suite file")
        return loc.build(node), loc
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SuiteError(f"{filename}:{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SuiteError(f"{filename}:1: invalid YAML: nested too deeply") from None
    except SuiteError as e:
        raise SuiteError(str(e).replace("{file}", filename)) from None
