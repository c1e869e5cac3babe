"""A stage's parameters, declared once: type, default (the documented policy) and meaning.

Each stage module declares ``class Params(StageParams)``. That class is *the* declaration:

* the notebook's cell tagged ``parameters`` lists the same names, types, defaults and meanings
  (a test compares them; :func:`parameters_cell` prints the cell a notebook must hold), and the
  next cell builds the object from the notebook's variables (:meth:`StageParams.from_namespace`)
  without repeating a field;
* ``pipeline.yaml`` lists the same parameters with the same defaults: the runner refuses a
  pipeline whose stage disagrees with its ``Params`` (:func:`check_declaration`);
* every value that differs from its default is a deviation from the documented policy
  (:meth:`StageParams.deviations`), recorded wherever the model it shaped is judged.

A field says what kind of policy it is with ``policy=`` of :func:`parameter`: a gate's lower or
upper limit (``gate_min``/``gate_max``), a gate switch, an operational setting, or (default) a
plain policy parameter; :mod:`creditrisk.governance.deviations` explains the kinds.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from creditrisk.governance.deviations import (
    POLICY_KEY,
    Deviation,
    FieldPolicy,
    parameter_deviations,
    same_value,
)
from creditrisk.provenance import to_json_value


def parameter(
    default: Any, help: str, *, policy: FieldPolicy = "policy", **constraints: Any
) -> Any:
    """A stage parameter: its default is the documented policy, ``help`` what it means.

    Args:
        default: The policy's value (``pipeline.yaml`` and the notebook repeat it).
        help: One line, as the notebook's ``# comment`` shows it.
        policy: What kind of policy it is (see the module docstring).
        **constraints: pydantic constraints (``ge=0``, ``gt=0``, …).
    """
    return Field(default, description=help, json_schema_extra={POLICY_KEY: policy}, **constraints)


class StageParams(BaseModel):
    """Base of every stage's ``Params``: frozen, no unknown names, JSON-valued fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The stage these parameters belong to (``ingest``, …, ``monitor``).
    STAGE: ClassVar[str] = ""

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> Self:
        """The parameters from a notebook's variables (``globals()`` after the parameters cell).

        Raises:
            NameError: A parameter is not defined in the namespace: the notebook's parameters
                cell and this declaration disagree.
        """
        missing = [name for name in cls.model_fields if name not in namespace]
        if missing:
            raise NameError(
                f"the {cls.STAGE} notebook's parameters cell lacks {missing}: it must declare "
                f"every field of {cls.__module__}.{cls.__name__}"
            )
        return cls(**{name: namespace[name] for name in cls.model_fields})

    @classmethod
    def documented_policy(cls) -> dict[str, Any]:
        """Every parameter's default, as JSON: the documented policy."""
        return {
            name: to_json_value(field.get_default()) for name, field in cls.model_fields.items()
        }

    @classmethod
    def field_policies(cls) -> dict[str, FieldPolicy]:
        """Parameter → the kind of policy it is."""
        return {name: _field_policy(field) for name, field in cls.model_fields.items()}

    def as_record(self) -> dict[str, Any]:
        """The parameters as executed, as JSON."""
        return {name: to_json_value(getattr(self, name)) for name in type(self).model_fields}

    def deviations(self) -> list[Deviation]:
        """Every parameter that differs from the documented policy."""
        meanings = {n: f.description or "" for n, f in type(self).model_fields.items()}
        return parameter_deviations(
            self.STAGE, self.as_record(), self.documented_policy(), self.field_policies(), meanings
        )


def _field_policy(field: FieldInfo) -> FieldPolicy:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    kind = extra.get(POLICY_KEY, "policy")
    return typing.cast(FieldPolicy, kind)


# ---------------------------------------------------------------------------------------------
# The declaration against a notebook and pipeline.yaml
# ---------------------------------------------------------------------------------------------


def notebook_type(annotation: Any) -> str:
    """The type a notebook's parameters cell writes for a field: ``str`` for a Literal of
    strings, ``dict`` for any mapping, the builtin's name otherwise."""
    origin = get_origin(annotation)
    if origin is Literal:
        kinds = {type(value).__name__ for value in get_args(annotation)}
        return kinds.pop() if len(kinds) == 1 else "str"
    if origin in (dict, Mapping) or annotation is dict:
        return "dict"
    if origin in (list, tuple) or annotation in (list, tuple):
        return "list"
    if origin in (types.UnionType, typing.Union):
        members = [notebook_type(a) for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else "str"
    return getattr(annotation, "__name__", str(annotation))


def parameters_cell(params: type[StageParams]) -> str:
    """The source of the notebook cell tagged ``parameters`` that matches ``params`` exactly."""
    lines = []
    for name, field in params.model_fields.items():
        default = field.get_default()
        literal = json.dumps(default) if isinstance(default, str) else repr(default)
        lines.append(
            f"{name}: {notebook_type(field.annotation)} = {literal}  # {field.description}"
        )
    return "\n".join(lines)


def check_declaration(
    stage: str, params: type[StageParams], declared: Mapping[str, Any]
) -> list[str]:
    """How ``pipeline.yaml``'s parameters of a stage disagree with its ``Params`` (empty: agree).

    Args:
        stage: The stage's name, for the messages.
        params: The stage's ``Params``.
        declared: ``pipeline.yaml``'s ``parameters`` of the stage.
    """
    problems = []
    policy = params.documented_policy()
    missing = [name for name in policy if name not in declared]
    unknown = [name for name in declared if name not in policy]
    if missing:
        problems.append(f"stage {stage!r}: pipeline.yaml lacks parameter(s) {missing}")
    if unknown:
        problems.append(
            f"stage {stage!r}: pipeline.yaml declares {unknown}, which "
            f"{params.__module__}.Params does not"
        )
    for name, value in declared.items():
        if name in policy and not same_value(to_json_value(value), policy[name]):
            problems.append(
                f"stage {stage!r}: pipeline.yaml's {name} = {value!r}, but the policy in "
                f"{params.__module__}.Params is {policy[name]!r}"
            )
    return problems
