"""Sub-commands from typed signatures: a function's signature and Google ``Args:`` docstring are its options and help.

As litgpt's ``__main__.py``: ``speechkit.cli.SUBCOMMANDS`` maps a command name to a typed function (or a
:class:`CommandGroup` of them, for ``prepare <corpus>`` and ``evaluate <metric>``); jsonargparse builds the
command's parser from the signature, so ``Literal[...]`` choices, types, defaults and ``--help`` come for free.
The docstring's first line and body describe the command, its ``Examples:`` section is printed in ``--help``, and
the usage line names the command (``usage: speechkit sharpness ...``).

A command function returns ``None`` or an exit status and raises ``SpeechkitError`` for a user error (printed as one
line by ``speechkit.cli``). A function whose only parameter is a dataclass takes that dataclass's fields as its
options (``speechkit compress`` and ``CompressConfig``). :func:`command` adds what a signature cannot say:

* ``positional``: parameters given without a flag, in order: one with a default is optional (``speechkit bins
  [CUTS]``), a list takes one or more values (``INPUT...``);
* ``fit_config``: the command takes a training run's configuration as ``speechkit fit`` does (``-c FILE``,
  ``--trainer.*``, ``--model.*``, ``--data.*``) in its parameter ``config`` (:class:`speechkit.config.FitArgs`);
* ``aliases``: the spellings of the former argparse options that are not derived below (``--out`` for
  ``--out_dir``, ``--one-pass`` for ``--sequential=false``).

The argparse spellings used in recipes keep working for every command: ``--eval-cuts`` for ``--eval_cuts``, a bare
``--skip-before`` for ``--skip_before=true``, ``--no-pad-to-30s`` for ``--pad_to_30s=false``, and several values
after a list option (``--choices 2 3 4 8``, ``--fit a.csv b.csv``, ``--lr full=1e-4 --lr lora=1e-3``) for one list.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import types
import typing
from collections.abc import Sequence as AbcSequence
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from speechkit.errors import SpeechkitError

SPEC_ATTRIBUTE = "__speechkit_command__"
FIT_CONFIG_PARAMETER = "config"
BOOL_WORDS = ("true", "false", "yes", "no")
_LISTS = (list, tuple, set, frozenset, AbcSequence)


@dataclass(frozen=True)
class CommandSpec:
    """What a command's signature cannot say (see the module docstring)."""

    positional: tuple[str, ...] = ()
    fit_config: bool = False
    aliases: Mapping[str, str] = field(default_factory=dict)


def command(*, positional: Sequence[str] = (), fit_config: bool = False,
            aliases: Optional[Mapping[str, str]] = None) -> Callable[[Callable], Callable]:
    """Mark a function as a command with a :class:`CommandSpec`; the function itself is returned unchanged."""

    def mark(function: Callable) -> Callable:
        setattr(function, SPEC_ATTRIBUTE, CommandSpec(tuple(positional), fit_config, dict(aliases or {})))
        return function

    return mark


def spec_of(function: Callable) -> CommandSpec:
    return getattr(function, SPEC_ATTRIBUTE, CommandSpec())


@dataclass(frozen=True)
class CommandGroup:
    """Sub-commands under one name: ``speechkit prepare <corpus>``, ``speechkit evaluate <metric>``.

    Args:
        summary: what the group does, for ``--help``.
        commands: name -> command function or ``"module:function"``; or ``"module:MAPPING"`` naming such a mapping
            (imported when used).
        noun: what a sub-command names (``corpus``), for the usage line and errors.
        report: called with the function's return value and its arguments (``prepare`` prints the manifests
            written), a function or ``"module:function"``; its return value, if an int, is the exit status.
    """

    summary: str
    commands: Union[str, Mapping[str, Union[str, Callable]]]
    noun: str
    report: Union[None, str, Callable[[Any], Any]] = None

    def names(self) -> list[str]:
        return list(load(self.commands) if isinstance(self.commands, str) else self.commands)

    def function(self, name: str) -> Callable:
        commands = load(self.commands) if isinstance(self.commands, str) else self.commands
        target = commands[name]
        return load(target) if isinstance(target, str) else target

    def finish(self, result: Any, arguments: dict[str, Any]) -> Any:
        """The exit status of a sub-command's result, through ``report``."""
        if self.report is None:
            return result
        return (load(self.report) if isinstance(self.report, str) else self.report)(result, arguments)


def load(target: str) -> Any:
    """``"package.module:attribute"`` -> the attribute."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


# ------------------------------------------------------------------ schema and help
def schema_of(function: Callable) -> Callable:
    """The callable whose signature is the options: the dataclass of a one-dataclass function, else the function."""
    parameters = list(inspect.signature(function).parameters.values())
    if len(parameters) == 1:
        hint = typing.get_type_hints(function).get(parameters[0].name)
        if dataclasses.is_dataclass(hint):
            return hint
    return function


def _docstring(function: Callable) -> Any:
    import docstring_parser

    return docstring_parser.parse(inspect.getdoc(function) or "")


def _documented(function: Callable) -> Callable:
    """Whose docstring describes the command: the dataclass of a one-dataclass command, else the function."""
    return schema_of(function)


def _example_lines(function: Callable) -> list[str]:
    """The lines of the docstring's ``Examples:`` section, as written (a long one continues after ``\\``)."""
    lines: list[str] = []
    for example in _docstring(_documented(function)).examples:
        lines += [line.rstrip() for line in (example.description or "").splitlines() if line.strip()]
    return lines


def examples_of(function: Callable) -> list[str]:
    """The command lines of the docstring's ``Examples:`` section (continued lines joined)."""
    commands: list[str] = []
    continued = False
    for line in _example_lines(function):
        text = line.strip().removesuffix("\\").strip()
        if continued:
            commands[-1] += f" {text}"
        else:
            commands.append(text)
        continued = line.endswith("\\")
    return commands


def description_of(function: Callable) -> str:
    """The docstring's summary and body (``Args:`` and ``Examples:`` left out), then its examples as written."""
    doc = _docstring(_documented(function))
    parts = [part for part in (doc.short_description, doc.long_description) if part]
    lines = _example_lines(function)
    if lines:
        first_indent = len(lines[0]) - len(lines[0].lstrip())
        parts.append("examples:\n" + "\n".join(f"  {line[first_indent:]}" for line in lines))
    return "\n\n".join(parts)


def _help_formatter() -> type:
    from jsonargparse import DefaultHelpFormatter

    class Help(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """jsonargparse's help, with the description (body and examples) kept as written."""

    return Help


def build_parser(function: Callable, prog: str) -> Any:
    """The jsonargparse parser of a command function (options and help from its signature and docstring)."""
    from jsonargparse import ArgumentParser

    spec, schema = spec_of(function), schema_of(function)
    parser = ArgumentParser(prog=prog, description=description_of(function), exit_on_error=False,
                            formatter_class=_help_formatter())
    skip = set(spec.positional) | ({FIT_CONFIG_PARAMETER} if spec.fit_config else set())
    if dataclasses.is_dataclass(schema):
        parser.add_class_arguments(schema, skip=skip)
    else:
        parser.add_function_arguments(schema, as_positional=True, skip=skip)
    helps = {param.arg_name: param.description for param in _docstring(schema).params}
    hints = typing.get_type_hints(schema)
    for name in spec.positional:
        default = inspect.signature(schema).parameters[name].default
        optional = default is not inspect.Parameter.empty
        kind, element = _kind(hints.get(name, str))
        extra = {"default": list(default) if kind == "list" else default} if optional else {}
        if kind == "list":  # INPUT...: one or more values (none either, with a default)
            nargs, value_type, extra["metavar"] = ("*" if optional else "+"), element, name.upper()
        else:
            nargs, value_type = ("?" if optional else None), hints.get(name, str)
        parser.add_argument(name, nargs=nargs, type=value_type, help=helps.get(name), **extra)
    if spec.fit_config:
        group = parser.add_argument_group("training-run configuration, as `speechkit fit` takes it")
        group.add_argument("-c", "--config", metavar="CONFIG.yaml", help=(
            f"{helps.get(FIT_CONFIG_PARAMETER) or ''} Repeatable; later files and --trainer.* / --model.* / --data.* "
            "overrides (--key value or --key=value) win, as in `speechkit fit`.").strip())
    parser.epilog = "Options may also be spelled with dashes (--num-buckets for --num_buckets)."
    return parser


# ------------------------------------------------------------------ former argparse spellings
def _option_kinds(schema: Callable) -> dict[str, tuple[str, Any]]:
    """option name -> (``bool`` | ``list`` | ``value``, element type of a list)."""
    return {name: _kind(hint) for name, hint in typing.get_type_hints(schema).items() if name != "return"}


def _kind(hint: Any) -> tuple[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        return _kind(rest[0]) if len(rest) == 1 else ("value", None)
    if hint is bool:
        return "bool", None
    if origin in _LISTS or hint in _LISTS:
        element = args[0] if args else str
        return "list", element if element in (int, float) else str
    return "value", None


def _list_item(text: str, element: Any) -> Any:
    try:
        return element(text) if element in (int, float) else text
    except ValueError:
        return text  # jsonargparse names the option and the bad value


def _is_value(token: str) -> bool:
    """A token that is a value, not an option (``-1.5`` is a value)."""
    if not token.startswith("-") or token == "-":
        return True
    try:
        float(token)
        return True
    except ValueError:
        return False


def legacy_argv(argv: Sequence[str], schema: Callable, aliases: Mapping[str, str]) -> list[str]:
    """Rewrite the former argparse spellings (see the module docstring) into jsonargparse's ``--name=value``."""
    kinds = _option_kinds(schema)
    out: list[str] = []
    lists: dict[str, list[Any]] = {}
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("--") or token == "--":
            out.append(token)
            continue
        flag, has_value, value = token.partition("=")
        flag = aliases.get(flag, flag)
        if "=" in flag:  # an alias that is a whole argument: --one-pass -> --sequential=false
            out.append(flag)
            continue
        name = flag[2:]
        if name not in kinds and name.replace("-", "_") in kinds:
            name = name.replace("-", "_")
        elif name.startswith("no-") or name.startswith("no_"):
            negated = name[3:].replace("-", "_")
            if kinds.get(negated, ("",))[0] == "bool" and not has_value:
                out.append(f"--{negated}=false")
                continue
        kind, element = kinds.get(name, ("value", None))
        if kind == "bool" and not has_value:
            following = tokens[index] if index < len(tokens) else None
            if following is not None and following.lower() in BOOL_WORDS:
                out.append(f"--{name}={following.lower()}")
                index += 1
            else:
                out.append(f"--{name}=true")
        elif kind == "list" and not (has_value and value.lstrip().startswith("[")):
            if not has_value and index < len(tokens) and tokens[index].lstrip().startswith("["):
                out += [f"--{name}", tokens[index]]  # jsonargparse's own form: --choices [2,3]
                index += 1
                continue
            values = [value] if has_value else []
            while not has_value and index < len(tokens) and _is_value(tokens[index]):
                values.append(tokens[index])
                index += 1
            lists.setdefault(name, []).extend(_list_item(v, element) for v in values)
        else:
            out.append(f"--{name}={value}" if has_value else f"--{name}")
    return out + [f"--{name}={json.dumps(values)}" for name, values in lists.items()]


# ------------------------------------------------------------------ running
def parse(function: Callable, prog: str, argv: Sequence[str]) -> dict[str, Any]:
    """The keyword arguments of ``function`` from a command line (``SystemExit`` for ``--help``)."""
    from speechkit.config import FitArgs, split_fit_args

    spec, schema = spec_of(function), schema_of(function)
    fit: list[str] = []
    if spec.fit_config:
        argv, fit = split_fit_args(argv)
    parser = build_parser(function, prog)
    namespace = parser.parse_args(legacy_argv(argv, schema, spec.aliases))
    kwargs = {key: value for key, value in namespace.as_dict().items() if not key.startswith("__")}
    if dataclasses.is_dataclass(schema):
        return {next(iter(inspect.signature(function).parameters)): schema(**kwargs)}
    if spec.fit_config:
        kwargs.pop(FIT_CONFIG_PARAMETER, None)  # the help-only -c / --config entry
        kwargs[FIT_CONFIG_PARAMETER] = FitArgs(tuple(fit))
    return kwargs


def _show_progress() -> None:
    """Log lines (progress, counts of what was left out) as plain text on stderr, as every command prints them."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def run(function: Callable, prog: str, argv: Sequence[str]) -> int:
    """Parse ``argv`` for ``function``, call it and return its exit status (0 for ``None``; ``--help``: 0)."""
    try:
        kwargs = parse(function, prog, argv)
    except SystemExit as stop:  # --help
        return int(stop.code or 0)
    _show_progress()
    status = function(**kwargs)
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def group_usage(group: CommandGroup, prog: str) -> str:
    """``speechkit prepare --help``: the sub-commands, each with its summary, and the first example of each."""
    lines = [f"usage: {prog} <{group.noun}> [options]", "", group.summary, "", f"{group.noun} choices:"]
    examples = []
    for name in group.names():
        function = group.function(name)
        lines.append(f"  {name:<16} {_docstring(_documented(function)).short_description or ''}")
        examples += examples_of(function)[:1]
    lines += ["", "examples:", *(f"  {line}" for line in examples), "",
              f"`{prog} <{group.noun}> --help` shows the options of one {group.noun}."]
    return "\n".join(lines)


def run_group(group: CommandGroup, prog: str, argv: Sequence[str]) -> int:
    """``speechkit prepare fsdd SRC OUT ...``: the sub-command named first, parsed and run as a command."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(group_usage(group, prog))
        return 0 if argv else 2
    name = argv[0]
    if name not in group.names():
        raise SpeechkitError(f"unknown {group.noun} {name!r}; expected one of: {', '.join(group.names())}")
    function = group.function(name)
    try:
        kwargs = parse(function, f"{prog} {name}", argv[1:])
    except SystemExit as stop:
        return int(stop.code or 0)
    _show_progress()
    status = group.finish(function(**kwargs), kwargs)
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def run_target(target: Any, prog: str, argv: Sequence[str]) -> int:
    """Run a registered target: a :class:`CommandGroup`, a command function, or a ``main(argv) -> int`` that parses
    its own command line (``speechkit transcribe``)."""
    if isinstance(target, CommandGroup):
        return run_group(target, prog, argv)
    if list(inspect.signature(target).parameters) == ["argv"]:
        try:
            return int(target(list(argv)) or 0)
        except SystemExit as stop:  # its parser's --help
            if stop.code is None or isinstance(stop.code, int):
                return int(stop.code or 0)
            raise
    return run(target, prog, argv)


def command_main(target: str, prog: str) -> Callable[[Optional[Sequence[str]]], int]:
    """A ``main(argv) -> int`` for a registered command (former module entry points); errors propagate."""

    def main(argv: Optional[Sequence[str]] = None) -> int:
        import sys

        return run_target(load(target), prog, list(sys.argv[1:] if argv is None else argv))

    main.__doc__ = f"``{prog}`` with ``argv`` (default: ``sys.argv[1:]``); user errors raise ``SpeechkitError``."
    return main
