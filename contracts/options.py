"""User options declared once, on the spec they configure.

A stage's spec (a frozen dataclass) marks the fields a user may set with `option(...)`: the default,
the help and the checks live there, nowhere else. From the specs come
- the options model (pydantic) that a Prefect flow takes as a parameter (its deployment schema),
- the command's flags (`--kebab-name`, type, choices, default, help), and
- back from chosen options, each spec's keyword arguments.
So adding an option is one field on its spec, and it cannot be recorded without reaching the code
that reads it: the spec is what that code reads.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

_KEY = "nearmiss_option"


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    help: str
    name: str | None = None          # the option's name when it differs from the field's (object_fps)
    choices: tuple | None = None
    checks: dict = dataclasses.field(default_factory=dict)   # pydantic Field constraints: gt, ge, multiple_of


def option(default: Any, help: str, *, name: str | None = None, choices: tuple | None = None, **checks):
    """A dataclass field a user may set, with its help and checks (gt=0, ge=128, multiple_of=32)."""
    return dataclasses.field(default=default,
                             metadata={_KEY: OptionInfo(help, name, tuple(choices) if choices else None, checks)})


@dataclasses.dataclass(frozen=True)
class DeclaredOption:
    name: str            # in the options model, the flow parameter and (kebab-cased) the flag
    spec: type           # the dataclass that declares it
    field: str           # its field there
    type: Any
    default: Any
    info: OptionInfo


def declared_options(spec: type) -> list[DeclaredOption]:
    hints = typing.get_type_hints(spec)
    return [DeclaredOption(f.metadata[_KEY].name or f.name, spec, f.name, hints[f.name], f.default, f.metadata[_KEY])
            for f in dataclasses.fields(spec) if _KEY in f.metadata]


def options_model(name: str, specs: tuple[type, ...], base: type[BaseModel], doc: str = "") -> type[BaseModel]:
    """The pydantic model with one field per option the specs declare (names must not collide)."""
    fields, seen = {}, {}
    for spec in specs:
        for o in declared_options(spec):
            if o.name in seen:
                raise ValueError(f"option {o.name!r} is declared by {seen[o.name].__name__} and {spec.__name__}")
            seen[o.name] = spec
            kind = Literal[o.info.choices] if o.info.choices else o.type
            fields[o.name] = (kind, Field(o.default, description=o.info.help, **o.info.checks))
    model = create_model(name, __base__=base, **fields)
    model.__doc__ = doc or model.__doc__
    return model


def spec_kwargs(options: BaseModel, spec: type) -> dict:
    """The keyword arguments of `spec` that the chosen options set."""
    return {o.field: getattr(options, o.name) for o in declared_options(spec)}


class OptionsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """One flag per field: --kebab-name, its type, choices and default, the description as help."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = field.annotation
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=field.default, help=field.description)
            continue
        choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
        base = {int | None: int, float | None: float, str | None: str}.get(kind, kind)
        parser.add_argument(flag, default=field.default, choices=choices, type=None if choices else base,
                            help=field.description)


def from_arguments(args: argparse.Namespace, model: type[BaseModel]) -> BaseModel:
    return model(**{name: getattr(args, name) for name in model.model_fields if hasattr(args, name)})
