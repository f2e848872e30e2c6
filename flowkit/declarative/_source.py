"""Reading a spec: a dict as given, or a YAML/JSON file, with the line of every key.

Lines are what make an error in a 200-line spec findable, so YAML files are
composed (PyYAML's node tree carries positions) and the line of each task and
each of its keys is kept in a :class:`Lines` map beside the plain data.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit import exceptions as exc

__all__ = ["MAX_YAML_NODES", "TOO_DEEP", "Lines", "Source", "read_spec"]


@dataclass(slots=True)
class Lines:
    """1-based lines of a spec's keys: ``(task, key)`` -> line; ``(task, None)`` for a task."""

    by_key: dict[tuple[str | None, str | None], int] = field(default_factory=dict)

    def find(self, task: str | None, key: str | None) -> int | None:
        """The line of ``key`` of ``task``, else of the nearest enclosing key, else None."""
        while key is not None:
            line = self.by_key.get((task, key))
            if line is not None:
                return line
            key = key.rpartition(".")[0] or None
        return self.by_key.get((task, None))


@dataclass(slots=True)
class Source:
    """A spec's data and where it came from.

    ``index``, when given, makes :attr:`lines` the first time an error needs
    them (a JSON file's, which its parser does not report).
    """

    data: Any
    path: str | None
    lines: Lines
    index: Callable[[], Lines] | None = None
    #: The keys of the spec's sub-flows found so far, so errors about them say "sub-flow".
    flows: set[str] = field(default_factory=set)

    def error(
        self, message: str, task: str | None = None, key: str | None = None, sub_flow: bool | None = None
    ) -> exc.FlowSpecError:
        """A :class:`~flowkit.exceptions.FlowSpecError` naming this source, the line, task and key.

        ``sub_flow`` says whether ``task`` is a sub-flow's key; by default,
        whether a sub-flow of that key was found.
        """
        if self.index is not None:
            self.lines, self.index = self.index(), None
        return exc.FlowSpecError(
            message,
            source=self.path,
            task=task,
            key=key,
            line=self.lines.find(task, key) if self.path else None,
            sub_flow=task in self.flows if sub_flow is None else sub_flow,
        )


def read_spec(spec: Any) -> Source:
    """Turn ``spec`` (a mapping, or a path to a ``.yaml``/``.yml``/``.json`` file) into a Source.

    Raises:
        FlowSpecError: the file cannot be read or parsed (with the line for syntax
            errors), or ``spec`` is neither a mapping nor a path.
    """
    if isinstance(spec, Mapping):
        return Source(spec, None, Lines())
    if not isinstance(spec, str | os.PathLike):
        raise exc.FlowSpecError(
            f"a flow spec is a mapping or the path of a YAML or JSON file, not {type(spec).__name__}"
        )
    path = Path(spec)
    shown = str(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise exc.FlowSpecError(f"cannot read the spec: {err.strerror or err}", source=shown) from err
    except UnicodeDecodeError as err:
        raise exc.quoting_cause(
            exc.FlowSpecError(f"the spec is not UTF-8 text: {err}", source=shown)
        ) from err
    if path.suffix.lower() == ".json":
        return _read_json(text, shown)
    return _read_yaml(text, shown)


def _read_json(text: str, shown: str) -> Source:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of two equal keys: a task pasted twice under one
        # name would vanish without a word.
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise exc.FlowSpecError(f"duplicate key {key!r} in a JSON object", source=shown, key=key)
            found[key] = value
        return found

    try:
        data = json.loads(text, object_pairs_hook=unique)
    except exc.FlowSpecError as err:  # a duplicate key, which json can place on no line
        raise _json_duplicate(text, shown) or err from None
    except json.JSONDecodeError as err:
        raise exc.FlowSpecError(
            f"invalid JSON: {err.msg} (column {err.colno})", source=shown, line=err.lineno
        ) from err
    except ValueError as err:  # an integer too long for int(), which json does not wrap
        raise _too_long(text, shown) or err from None
    except RecursionError:
        raise exc.FlowSpecError(TOO_DEEP, source=shown) from None
    return Source(data, shown, Lines(), index=lambda: _json_lines(text))


def _json_duplicate(text: str, shown: str) -> exc.FlowSpecError | None:
    """The error of a JSON spec's key given twice, with both lines; None without PyYAML.

    A JSON document is also YAML, whose node tree has the positions :mod:`json`
    does not keep; the YAML check for the same mistake says them.
    """
    try:
        import yaml

        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _refuse_duplicates(node, shown, yaml)
    except exc.FlowSpecError as err:
        return err
    except Exception:  # no PyYAML, or JSON that YAML 1.1 does not take: no lines
        return None
    return None


def _json_lines(text: str) -> Lines:
    """The lines of a JSON spec's keys, found only when an error is reported.

    :mod:`json` keeps no positions; a JSON document is also YAML, whose parser
    does. Without PyYAML, or for JSON it reads otherwise, errors name no line,
    as before.
    """
    lines = Lines()
    try:
        import yaml

        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # no PyYAML, or JSON that YAML 1.1 does not take: no lines
        return lines
    if node is not None:
        lines.by_key[(None, None)] = node.start_mark.line + 1
        _index_lines(node, lines, yaml)
    return lines


def _too_long(text: str, shown: str) -> exc.FlowSpecError | None:
    """The error of a spec holding an integer longer than ``int()`` reads, at its line; None if none is.

    Python refuses to read an integer of more than ``sys.get_int_max_str_digits()``
    digits (4300 by default, against a denial of service), and json and PyYAML
    let its bare ValueError out, naming no file or line.
    """
    limit = sys.get_int_max_str_digits()
    found = re.search(rf"[0-9]{{{limit + 1},}}", text) if limit else None
    if found is None:
        return None
    return exc.FlowSpecError(
        f"a number of {found.end() - found.start()} digits is longer than Python reads "
        f"({limit} digits at most)",
        source=shown,
        line=text.count("\n", 0, found.start()) + 1,
    )


#: Said of a spec nested deeper than the parser's recursion allows.
TOO_DEEP = "the spec is nested too deeply (hundreds of levels of [ or {)"


def _read_yaml(text: str, shown: str) -> Source:
    try:
        import yaml
    except ImportError as err:
        raise exc.FlowSpecError(
            "reading a YAML spec needs PyYAML: pip install 'flowkit[declarative]' "
            "(or use a .json file or a dict)",
            source=shown,
        ) from err
    # Parsed once: the node tree gives the lines, and the data is built from it
    # (a second parse by safe_load took longer than everything else a read does).
    node = _compose(text, shown, yaml)
    lines = Lines()
    if node is None:
        return Source(None, shown, lines)
    _refuse_duplicates(node, shown, yaml)  # before building: an alias bomb is refused first
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node)
    except (yaml.YAMLError, RecursionError) as err:
        raise _yaml_error(err, shown) from (None if isinstance(err, RecursionError) else err)
    except ValueError as err:  # an integer too long for int(), which PyYAML does not wrap
        raise _too_long(text, shown) or err from None
    finally:
        loader.dispose()
    lines.by_key[(None, None)] = node.start_mark.line + 1
    _index_lines(node, lines, yaml)
    return Source(data, shown, lines)


def _compose(text: str, shown: str, yaml: Any) -> Any:
    """Parse YAML text into PyYAML's node tree (positions included).

    With libyaml (PyYAML's C parser: a 5,000-task spec parses in a sixth of the
    time) when PyYAML was built with it. The same resolver and constructor run
    either way; only text the C parser refuses is parsed again by the Python
    one, whose verdict (and wording, which errors quote) is the one reported,
    as before: so a spec the C parser refuses and the Python one reads still loads.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except (yaml.YAMLError, RecursionError):
            pass
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError) as err:
        raise _yaml_error(err, shown) from (None if isinstance(err, RecursionError) else err)


def _yaml_error(err: BaseException, shown: str) -> exc.FlowSpecError:
    """The FlowSpecError for what PyYAML raised: its problem and line, or a spec nested too deeply."""
    if isinstance(err, RecursionError):
        return exc.FlowSpecError(TOO_DEEP, source=shown)
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return exc.FlowSpecError(
        f"invalid YAML: {problem}", source=shown, line=None if mark is None else mark.line + 1
    )


#: Most YAML nodes a spec may expand to, aliases followed (a large spec has thousands).
MAX_YAML_NODES = 1_000_000


def _refuse_duplicates(root: Any, shown: str, yaml: Any) -> None:
    """Refuse a mapping holding one key twice (PyYAML keeps the last without a word).

    A task pasted twice under one name would otherwise vanish from the flow.

    Aliases make the node tree a graph whose expansion can be exponential in
    the text (a "billion laughs" of a few hundred bytes): the walk counts every
    node it reaches, aliased ones each time, and refuses a spec past
    :data:`MAX_YAML_NODES`, before anything else walks the loaded data.
    """
    stack = [root]
    reached = 0
    while stack:
        node = stack.pop()
        reached += 1
        if reached > MAX_YAML_NODES:
            raise exc.FlowSpecError(
                f"the spec expands to more than {MAX_YAML_NODES} values through YAML aliases"
                " (an alias bomb?); write the repeated parts out, or use fewer aliases",
                source=shown,
            )
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                stack.append(value_node)
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key_node.start_mark.line + 1
                seen = first.get(key_node.value)
                if seen is not None:
                    raise exc.FlowSpecError(
                        f"duplicate key {key_node.value!r} (first on line {seen})",
                        source=shown,
                        key=str(key_node.value),
                        line=line,
                    )
                first[key_node.value] = line
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _index_lines(root: Any, lines: Lines, yaml: Any) -> None:
    if not isinstance(root, yaml.MappingNode):
        return
    for key_node, value_node in root.value:
        key = key_node.value
        lines.by_key[(None, str(key))] = key_node.start_mark.line + 1
        if key != "tasks" or not isinstance(value_node, yaml.MappingNode):
            continue
        _index_tasks(value_node, lines, yaml)


def _index_tasks(node: Any, lines: Lines, yaml: Any) -> None:
    """Index the tasks of a ``tasks:`` mapping, and those of its sub-flows under their own keys."""
    for task_node, body in node.value:
        task = _key_as_read(task_node, yaml)
        lines.by_key[(task, None)] = task_node.start_mark.line + 1
        _index_task(task, body, "", lines, yaml)
        if not isinstance(body, yaml.MappingNode):
            continue
        for key_node, value_node in body.value:
            if key_node.value == "tasks" and isinstance(value_node, yaml.MappingNode):
                _index_tasks(value_node, lines, yaml)


def _key_as_read(node: Any, yaml: Any) -> str:
    """A task key as the loaded data has it: ``yes`` is True there, so its line goes under "True"."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:str":
        return str(node.value)
    try:
        return str(yaml.safe_load(yaml.serialize(node)))
    except yaml.YAMLError:
        return str(node.value)


def _index_task(task: str, node: Any, prefix: str, lines: Lines, yaml: Any) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        lines.by_key[(task, key)] = key_node.start_mark.line + 1
        if not prefix:  # one level down: inputs.<arg>
            _index_task(task, value_node, key + ".", lines, yaml)
