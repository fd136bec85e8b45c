"""Reading ``highmark.yml``: finding it, ``${VAR}`` expansion, validation, and one-line errors.

The whole file is validated before any work. Every error names the file, the line, the job and the
key, in one line. Secrets substituted from the environment and passwords in connection URLs are
registered with :mod:`highmark.redact` as soon as they are read.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from highmark.config.common import SECRET_KEY_HINTS, KeyedError, NestedErrors
from highmark.config.project import ProjectConfig, model_at
from highmark.errors import ConfigError
from highmark.redact import register_secret

PROJECT_FILE_NAME = "highmark.yml"
PROJECT_ENV_VAR = "HIGHMARK_PROJECT"

_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Lines = dict[tuple[str, ...], int]


def find_project_file(explicit: str | Path | None = None) -> Path:
    """``--project``, else ``$HIGHMARK_PROJECT``, else ``./highmark.yml``."""
    chosen = explicit or os.environ.get(PROJECT_ENV_VAR) or PROJECT_FILE_NAME
    path = Path(chosen).expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE_NAME
    if not path.is_file():
        hint = (
            ""
            if explicit or os.environ.get(PROJECT_ENV_VAR)
            else (" (create one, or name it with --project or HIGHMARK_PROJECT)")
        )
        raise ConfigError(f"{path}: project file not found{hint}")
    return path.resolve()


def load_project_config(path: str | Path | None = None) -> ProjectConfig:
    """Read, expand and validate a project file; raise :class:`ConfigError` on the first problem."""
    file = find_project_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the project file: {exc.strerror}") from None
    return parse_project_text(text, file)


def parse_project_text(text: str, file: Path) -> ProjectConfig:
    try:
        node, raw = _parse_yaml(text, _FAST_LOADER)
    except yaml.YAMLError:
        try:  # the pure-Python parser's error names the line and the problem as users know it
            node, raw = _parse_yaml(text, yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    lines = _line_index(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}:1: the project file must be a mapping of control/connections/jobs"
        )
    expanded = _expand_env(raw, (), file, lines)
    try:
        return ProjectConfig.model_validate({**expanded, "path": file})
    except ValidationError as exc:
        path, message = _describe(exc.errors(), ProjectConfig, ())
        raise ConfigError(f"{_where(file, lines, path)}: {message}") from None
    except KeyedError as exc:
        raise ConfigError(_where(file, lines, exc.path) + ": " + exc.message) from None


# libyaml's parser, where PyYAML has it: several times faster than the pure-Python one, and the
# same safe constructor builds the values.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, loader_class: type[yaml.SafeLoader]) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its values, in one parse."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _expand_env(value: Any, path: tuple[str, ...], file: Path, lines: Lines) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*path, str(k)), file, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*path, str(i)), file, lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"{_where(file, lines, path)}: environment variable {name} is not set"
            )
        resolved = os.environ[name]
        if any(hint in name.lower() for hint in SECRET_KEY_HINTS) or any(
            hint in part.lower() for part in path for hint in SECRET_KEY_HINTS
        ):
            register_secret(resolved)
        return resolved

    return _ENV_PATTERN.sub(substitute, value)


def _line_index(node: yaml.Node | None) -> Lines:
    """Map each key path of the YAML document to its 1-based line number."""
    index: Lines = {}

    def walk(current: yaml.Node, path: tuple[str, ...]) -> None:
        index.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                key = (*path, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                walk(item, (*path, str(i)))

    if node is not None:
        walk(node, ())
    return index


def _where(file: Path, lines: Lines, path: tuple[str, ...]) -> str:
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    location = f"{file}:{line}" if line else str(file)
    if len(path) >= 2 and path[0] == "jobs":
        key = ".".join(path[2:]) or "(job)"
        return f"{location}: job {path[1]}: {key}"
    return f"{location}: {'.'.join(path) or '(top level)'}"


def _describe(
    errors: list[Any], model: type[BaseModel], prefix: tuple[str, ...]
) -> tuple[tuple[str, ...], str]:
    """The path and the one-line message of the error to report (of pydantic's ``errors`` for
    ``model``, whose section is at ``prefix``)."""
    # A misspelt key also makes the key it was meant to be "missing": report the misspelling.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    local = _loc(error)
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, NestedErrors):
        return _describe(ctx_error.errors, ctx_error.model, (*prefix, *local, *ctx_error.path))
    message = str(error["msg"]).removeprefix("Value error, ")
    if isinstance(ctx_error, KeyedError):
        local, message = (*local, *ctx_error.path), ctx_error.message
    explained = 1
    if error["type"] == "extra_forbidden":
        message = f"unknown key {local[-1]!r}"
        parent = model_at(model, local[:-1])
        keys = [k for k in parent.model_fields if k not in ("path", "job_id")] if parent else []
        close = difflib.get_close_matches(local[-1], keys, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
            if any(e["type"] == "missing" and _loc(e) == (*local[:-1], close[0]) for e in errors):
                explained += 1
    elif error["type"] == "enum":
        expected = (error.get("ctx") or {}).get("expected", "")
        message = f"{error['input']!r} is not one of {expected}"
    elif error["type"] == "missing":
        message = "is required"
    path = (*prefix, *local)
    if path and path[-1] == "job_id" and len(path) == 3:
        message = f"job id {path[1]!r} is not valid (letters, digits, _ . -; at most 100)"
    more = len(errors) - explained
    return path, message + (f" (and {more} more)" if more > 0 else "")


def _loc(error: Any) -> tuple[str, ...]:
    """An error's key path, without pydantic's union/function markers."""
    path = (str(p) for p in error["loc"])
    return tuple(p for p in path if not p.startswith(("function-", "tagged-union")))
