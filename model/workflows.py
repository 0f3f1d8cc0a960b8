"""Workflows: chains of steps, groups that run in parallel, chords (a group, then one step), and
the records that say how a workflow stands. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from .errors import ValidationError

if TYPE_CHECKING:
    from .job import Job
    from .options import Options

# Where a held job waits: SCHEDULED at a time no worker (Python or Go, with its 10-minute
# look-ahead) ever reaches, until its dependencies succeeded (naive UTC, as the column holds it).
HELD_UNTIL = datetime(9999, 12, 31)


class PassResults(StrEnum):
    """What a step receives from the jobs it waited for, as its first positional argument."""

    PREVIOUS = "previous"  # the one job before it: that job's result
    ALL = "all"  # a group before it: the list of its members' results, in order


@dataclass(frozen=True)
class FlowLink:
    """A job's place in a workflow, kept under ``options.metadata.queuer_py`` (set by
    ``add_chain``, ``add_group`` and ``depends_on``; not for users to build)."""

    workflow: UUID | None = None
    dependents: bool = False  # some job waits for this one
    pass_results: PassResults | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.workflow is not None:
            data["workflow"] = str(self.workflow)
        if self.dependents:
            data["dependents"] = True
        if self.pass_results is not None:
            data["pass_results"] = self.pass_results.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowLink | None:
        workflow, passing = data.get("workflow"), data.get("pass_results")
        link = cls(
            workflow=UUID(workflow) if isinstance(workflow, str) and len(workflow) == 36 else None,
            dependents=data.get("dependents") is True,
            pass_results=PassResults(passing) if passing in ("previous", "all") else None,
        )
        return link if link != cls() else None


@dataclass(frozen=True)
class Step:
    """One job of a workflow: ``Step(task, *args, options=..., pass_result=True, **kwargs)``.

    In a chain, a step receives the result of the step before it as its first positional argument
    (a list of results after a group) unless ``pass_result`` is False."""

    task: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: Options | None = None
    pass_result: bool = True

    def __init__(
        self,
        task: Any,
        /,
        *args: Any,
        options: Options | None = None,
        pass_result: bool = True,
        **kwargs: Any,
    ) -> None:
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "pass_result", pass_result)
        if not isinstance(pass_result, bool):
            raise ValidationError("pass_result must be True or False")


@dataclass(frozen=True)
class Group:
    """Steps that run in parallel, as one item of a chain."""

    steps: tuple[Step, ...]

    def __init__(self, steps: Sequence[Step]) -> None:
        object.__setattr__(self, "steps", tuple(steps))


def stages_of(items: Sequence[Step | Group], what: str) -> list[list[Step]]:
    """The stages of a workflow: each runs once every job of the stage before it succeeded."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
        raise ValidationError(f"{what} needs at least one step")
    stages: list[list[Step]] = []
    for index, item in enumerate(items):
        steps = list(item.steps) if isinstance(item, Group) else [item]
        if not steps:
            raise ValidationError(f"{what} item {index}: a group needs at least one step")
        for step in steps:
            if not isinstance(step, Step):
                raise ValidationError(f"{what} item {index}: {type(step).__name__} is not a Step")
        stages.append(steps)
    return stages


class WorkflowStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass
class Workflow:
    """A chain or a group with its members in order (a chord's final step last)."""

    rid: UUID
    kind: str  # "chain" or "group"
    members: list[Job] = field(default_factory=list)

    @property
    def status(self) -> WorkflowStatus:
        statuses = {m.status.value for m in self.members}
        if statuses <= {"SUCCEEDED"}:
            return WorkflowStatus.SUCCEEDED
        if statuses & {"QUEUED", "SCHEDULED", "RUNNING"}:
            return WorkflowStatus.RUNNING
        return WorkflowStatus.FAILED if "FAILED" in statuses else WorkflowStatus.CANCELLED

    @property
    def results(self) -> list[Any]:
        """Each member's result (its return value), in order; None for members without one."""
        return [result_value(m.results) for m in self.members]


def result_value(results: list[Any] | None) -> Any:
    """A job's return value from its results array: none, the one value, or the values."""
    if not results:
        return None
    return results[0] if len(results) == 1 else list(results)
