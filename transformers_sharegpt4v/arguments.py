"""Command options as dataclasses, parsed the way the training recipes are: defaults < `--config` YAML < flags.

A command declares its options as ONE dataclass whose fields carry `metadata={"help": ...}`; `parse_arguments`
turns it into an argparse parser and returns an instance. transformers' `HfArgumentParser` (what TRL's
`TrlParser` builds on) does the same, but importing it costs about two seconds, and `--help` must answer at
once; so this module imports nothing heavy (PyYAML only when `--config` is given).

Field rules:
- the flag is the field name with dashes (`num_workers` -> `--num-workers`); `--num_workers` works too;
- a field without a default is required; `positional("help", "SRC")` declares a positional one (`SRC DST`);
- `bool` with default False is a switch (`--compile`); with default True, `--no-NAME` turns it off;
- `list[str]` takes one or more values and may be repeated (`--json A.json --json B.json`);
- other metadata keys (`choices`, `metavar`) go to `add_argument`; `"deprecated": ["--old-name"]` keeps an
  old spelling working, with a one-line warning on stderr.

`--config FILE.yaml` holds `field_name: value` pairs (dashed names are accepted); a key no field has is an
error that names it, as an unknown flag is.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

__all__ = ["Action", "build_parser", "parse_arguments", "positional"]

T = TypeVar("T")
_OWN_KEYS = {"positional", "deprecated"}


def positional(help: str, metavar: str | None = None) -> Any:
    """A required positional field: `src: str = positional("checkpoint folder", "SRC")`."""
    metadata: dict[str, Any] = {"help": help, "positional": True}
    if metavar is not None:
        metadata["metavar"] = metavar
    return dataclasses.field(metadata=metadata)


class Action(NamedTuple):
    """One action of a command with actions (`sharegpt4v data build|export|...`): its options dataclass, the
    function that runs it (taking an instance, returning the exit code) and its help."""

    arguments: type
    run: Callable[[Any], int]
    help: str
    description: str | None = None


class _Deprecated(argparse.Action):
    """Stores like the option it stands for (`store`, `store_true`, `append`...) after a one-line warning."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, inner: argparse.Action, **kwargs: Any):
        settings = {"nargs": inner.nargs, "type": inner.type, "choices": inner.choices, "metavar": inner.metavar}
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **settings)
        self.new, self.inner = new, inner

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        print(f"{parser.prog}: warning: {option} is deprecated, use {self.new}", file=sys.stderr)
        self.inner(parser, namespace, values, option)


def _field_type(hint: Any) -> tuple[Any, bool]:
    """(the base type, whether it is a list) of `X`, `X | None` or `list[X]`."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is list:
        return args[0], True
    if args:  # Optional[X] / X | None
        return _field_type(args[0])
    return hint, False


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, hint: Any, default: Any) -> None:
    """One option for `field`; `default` is the dataclass default or the `--config` file's value."""
    kind, is_list = _field_type(hint)
    options = {key: value for key, value in field.metadata.items() if key not in _OWN_KEYS}
    required = default is dataclasses.MISSING
    name = "--" + field.name.replace("_", "-")
    if field.metadata.get("positional"):
        parser.add_argument(field.name, nargs="?" if not required else None, default=default, type=kind, **options)
        return
    if kind is bool and not is_list:
        switch_off = field.default is True  # named after the dataclass default, whatever the file says
        name = "--no-" + field.name.replace("_", "-") if switch_off else name
        options |= {"action": "store_false" if switch_off else "store_true", "default": default}
    else:
        options |= {"type": kind, "default": None if required else default}
        options |= {"required": required and not field.metadata.get("deprecated")}
        if is_list:  # flags replace the default / file list instead of extending it (see parse_arguments)
            options |= {"nargs": "+", "action": "extend", "default": None}
    action = parser.add_argument(name, dest=field.name, **options)
    for old in field.metadata.get("deprecated", ()):
        parser.add_argument(old, dest=field.name, action=_Deprecated, new=name, inner=action)


def build_parser(
    cls: type, prog: str, description: str | None = None, defaults: dict[str, Any] | None = None
) -> argparse.ArgumentParser:
    """The argparse parser of the dataclass `cls`; `defaults` (a `--config` file's values) replace the fields'."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML of option values (flags given override them)")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        _add_field(parser, field, hints[field.name], _default(field, defaults or {}))
    return parser


def _normalize_flags(argv: Sequence[str]) -> list[str]:
    """`--num_workers` -> `--num-workers` (option names only, not their values, and not after `--`)."""
    out: list[str] = []
    for position, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[position:])
        if arg.startswith("--"):
            name, equals, value = arg.partition("=")
            if name == "--config" and equals:  # `--config=FILE` -> `--config FILE`, as `_read_config` reads it
                out += [name, value]
                continue
            arg = name.replace("_", "-") + equals + value
        out.append(arg)
    return out


def _read_config(cls: type, argv: list[str], prog: str) -> dict[str, Any]:
    """The values of `--config FILE` in argv (empty without it), keys checked against the fields of `cls`."""
    if "--config" not in argv:
        return {}
    position = argv.index("--config")
    if position + 1 >= len(argv):
        argparse.ArgumentParser(prog=prog).error("argument --config: expected one argument")
    import yaml

    path = Path(argv[position + 1])
    parser = argparse.ArgumentParser(prog=prog)
    if not path.is_file():
        parser.error(f"--config {path}: no such file")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        parser.error(f"--config {path} must be a YAML mapping of option names to values")
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    known = {field.name for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(values) - known)
    if unknown:
        parser.error(f"unknown key(s) in --config {path}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return values


def parse_arguments(cls: type[T], argv: Sequence[str], prog: str, description: str | None = None) -> T:
    """Parse argv into an instance of the dataclass `cls` (defaults < `--config` YAML < flags). Bad or missing
    options exit with argparse's usage error (code 2) naming them."""
    argv = _normalize_flags(argv)
    defaults = _read_config(cls, argv, prog)
    parser = build_parser(cls, prog, description, defaults)
    namespace = vars(parser.parse_args(argv))
    namespace.pop("config", None)
    for name, value in _list_defaults(cls, defaults).items():
        if namespace.get(name) is None:
            namespace[name] = value
    required = _required(cls, defaults)
    missing = [name for name, value in namespace.items() if value is None and name in required]
    if missing:  # a required option with an old spelling is checked here, not by argparse
        parser.error("the following arguments are required: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**namespace)


def _default(field: dataclasses.Field, defaults: dict[str, Any]) -> Any:
    """A field's value when no flag gives it: the `--config` file's, else the dataclass default (MISSING: none)."""
    if field.name in defaults:
        return defaults[field.name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _required(cls: type, defaults: dict[str, Any]) -> set[str]:
    """The fields of `cls` with no default (in the dataclass or the `--config` file)."""
    return {field.name for field in dataclasses.fields(cls) if _default(field, defaults) is dataclasses.MISSING}


def _list_defaults(cls: type, defaults: dict[str, Any]) -> dict[str, Any]:
    """The value each list field of `cls` takes when no flag gives it: the `--config` file's, else the default."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if field.init and _field_type(hints[field.name])[1]:
            value = _default(field, defaults)
            if value is not dataclasses.MISSING:
                values[field.name] = value
    return values
