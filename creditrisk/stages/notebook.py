"""What a stage notebook calls right after its parameters cell: ``begin``.

::

    ctx, params = begin(evaluate.Params, globals())

builds the stage's typed parameters from the notebook's variables (no field repeated by hand),
resolves the run context (pipeline mode only when the runner started the kernel for a run that
holds the workspace lock, interactive otherwise), empties the interactive scratch folder, and
prints, as the notebook's first output, one line saying where the run writes — then, if any,
the parameters that differ from the documented policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from creditrisk.stages.context import RunContext
from creditrisk.stages.params import StageParams

P = TypeVar("P", bound=StageParams)


def begin(params_type: type[P], namespace: Mapping[str, Any]) -> tuple[RunContext, P]:
    """The run context and the stage's parameters of a notebook; prints where it writes.

    Args:
        params_type: The stage's ``Params`` (e.g. ``creditrisk.stages.evaluate.Params``).
        namespace: The notebook's variables after the parameters cell (``globals()``).

    Raises:
        NameError: The parameters cell lacks a declared parameter.
        NotInPipeline: A run id is set but its run does not hold the workspace lock.
    """
    params = params_type.from_namespace(namespace)
    ctx = RunContext.resolve(params_type.STAGE)
    ctx.clear_scratch()
    print(ctx.describe())
    deviations = params.deviations()
    if deviations:
        listed = ", ".join(d.describe(qualified=False) for d in deviations)
        print(f"{len(deviations)} parameter(s) differ from the policy in pipeline.yaml: {listed}")
    return ctx, params
