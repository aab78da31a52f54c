"""The project's one YAML loader: every problem is one sentence naming ``file:line``, raised as the caller's
:class:`~latxa.errors.LatxaError` subclass.

Beyond PyYAML's ``safe_load`` it refuses what a careless or hostile file can do to a reader:

- text that is not UTF-8 (a UTF-8 byte-order mark is fine; UTF-16/32 and Latin-1 are named as such);
- files above :data:`MAX_BYTES`;
- nesting deeper than :data:`MAX_DEPTH` levels (PyYAML's composer recurses and would raise RecursionError);
- duplicate keys in one mapping (PyYAML keeps the last one silently);
- aliases that expand to more than :data:`MAX_NODES` values (a 2 KB "billion laughs" file expands to
  gigabytes in every reader that walks it), and recursive aliases. Small anchors and ``<<`` merges still work.

The checks run on PyYAML's node graph, before any Python object is built, in time linear in the file.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from latxa.errors import LatxaError

MAX_BYTES = 16 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_yaml_file(path: str | Path, error: type[LatxaError], what: str) -> Any:
    """Parse ``path``; ``what`` names the file in messages (e.g. "Config file")."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist.")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(f"{what} {path} is {size:,} bytes; YAML configs are read up to {MAX_BYTES:,} bytes.")
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {err.strerror or err}.") from None
    return load_yaml_text(_decode(data, str(path), error), error, str(path))


def load_yaml_text(text: str, error: type[LatxaError], where: str) -> Any:
    """Parse YAML ``text`` with the checks above; ``where`` (a file name) starts every message."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as err:  # the reader checks every character up front
        line = text.count("\n", 0, err.position) + 1
        raise error(f"{where}:{line} is not valid YAML: the control character #x{err.character:02x} is not "
                    "allowed.") from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise error(f"{where}:{loader.line + 1}: nested deeper than {MAX_DEPTH} levels.") from None
        if node is None:
            return None
        _check_graph(node, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{where}{line} is not valid YAML: {problem}.") from None
    finally:
        loader.dispose()


def _decode(data: bytes, where: str, error: type[LatxaError]) -> str:
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise error(f"{where}:1: the file is UTF-32 text; save it as UTF-8.")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error(f"{where}:1: the file is UTF-16 text; save it as UTF-8.")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise error(f"{where}:{line}: the file holds NUL bytes (UTF-16 or binary data?); save it as UTF-8 text.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(f"{where}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at column {column}); "
                    "save the file as UTF-8.") from None


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: Node, where: str, error: type[LatxaError]) -> None:
    """Depth, duplicate keys, alias expansion and recursion, in one post-order walk (no recursion)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    shared = False
    too_big: Node | None = None
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        nid = id(node)
        if finished:
            kids = _children(node)
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            height[nid] = 1 + max((height[id(k)] for k in kids), default=0)
            on_path.discard(nid)
            if height[nid] > MAX_DEPTH:
                raise error(f"{where}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels.")
            if too_big is None and size[nid] > MAX_NODES:
                too_big = node
            continue
        if nid in size:  # reached again through an alias: its expanded size counts again, it is not walked again
            shared = True
            continue
        if nid in on_path:
            raise error(f"{where}:{node.start_mark.line + 1}: a recursive alias (an anchor used inside itself).")
        if isinstance(node, MappingNode):
            _check_duplicates(node, where, error)
        on_path.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in reversed(_children(node)))
    if shared and too_big is not None:
        raise error(f"{where}:{too_big.start_mark.line + 1}: aliases (*name) expand this document to more than "
                    f"{MAX_NODES:,} values; write the values out or use fewer aliases.")


def _check_duplicates(node: MappingNode, where: str, error: type[LatxaError]) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            shown = key.value if len(key.value) <= 60 else key.value[:57] + "..."
            raise error(f"{where}:{key.start_mark.line + 1}: duplicate key '{shown}' (each key may appear once).")
        seen.add(ident)
