"""The workflow operations of a client: chains, groups and chords, read and waited for. The jobs
are ordinary rows; a held one waits in the database until the jobs before it succeeded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from queuer.database.store import run_steps_async
from queuer.model import Group, Step, ValidationError, WaitTimeoutError, Workflow, stages_of
from queuer.model.jsoncodec import as_rid

from .twins import blocking

if TYPE_CHECKING:
    from queuer.database.store import Store

    from .enqueue import JobBuilder
    from .loop import LoopThread
    from .subscribers import Subscribers


class WorkflowOperations:
    """Mixed into ``Client``: build workflows, read them, wait for them."""

    _loop: LoopThread
    _store: Store
    _builder: JobBuilder
    _subscribers: Subscribers

    if TYPE_CHECKING:  # Client's

        async def _until_ended(self, rids: list[UUID], timeout: float) -> int: ...
        def _refuse_when_closed(self) -> None: ...

    async def add_chain_async(self, items: Sequence[Step | Group]) -> Workflow:
        """Run the steps one after the other: each starts when the one before it SUCCEEDED (it is
        enqueued in the statement that archives that one) and receives its result as its first
        positional argument (after a ``Group``: the list of its members' results). A step that
        FAILED or was CANCELLED stops the chain: the rest is archived CANCELLED, naming it."""
        return await self._add_workflow(stages_of(items, "chain"), "chain")

    async def add_group_async(self, steps: Sequence[Step], *, then: Step | None = None) -> Workflow:
        """Run the steps in parallel (all written in one statement). With ``then`` (a chord), that
        step runs once every member SUCCEEDED, with the list of their results."""
        if then is not None and not isinstance(then, Step):
            raise ValidationError(f"then must be a Step, got {type(then).__name__}")
        if isinstance(steps, Group):
            steps = list(steps.steps)
        stages = stages_of([Group(list(steps)) if isinstance(steps, Sequence) else steps], "group")
        if then is not None:
            stages.append([then])
        return await self._add_workflow(stages, "group")

    async def _add_workflow(self, stages: list[list[Step]], kind: str) -> Workflow:
        self._refuse_when_closed()
        news, links = self._builder.workflow(stages, kind)

        async def write() -> Workflow:
            async with self._store.connection() as conn, conn.transaction():
                cur = conn.cursor()
                await self._builder.check_names_async(cur, news)
                await run_steps_async(cur, self._store.workflows.write_steps(news, links))
            assert links.workflow is not None
            return await self._store.workflows.get(links.workflow)

        return await self._loop.call_async(write())

    async def get_workflow_async(self, rid: UUID | str) -> Workflow:
        """A chain or group with its members in order, wherever each is now; its ``status`` and
        ``results`` follow from theirs."""
        return await self._loop.call_async(self._store.workflows.get(as_rid(rid, "workflow rid")))

    async def wait_for_workflow_async(self, rid: UUID | str, timeout_seconds: float = 30.0) -> Workflow:
        """Wait until every member of the chain or group has ended (driven by the archive's
        notifications); raises ``WaitTimeoutError``."""
        return await self._loop.call_async(self._wait_workflow(as_rid(rid, "workflow rid"), timeout_seconds))

    async def _wait_workflow(self, rid: UUID, timeout: float) -> Workflow:
        workflow = await self._store.workflows.get(rid)
        late = await self._until_ended([m.rid for m in workflow.members], timeout)
        if late:
            raise WaitTimeoutError(f"workflow {rid}: {late} job(s) did not end within {timeout}s")
        return await self._store.workflows.get(rid)

    add_chain = blocking(add_chain_async)
    add_group = blocking(add_group_async)
    get_workflow = blocking(get_workflow_async)
    wait_for_workflow = blocking(wait_for_workflow_async)
    wait_for_group = blocking(wait_for_workflow_async)
    wait_for_group_async = wait_for_workflow_async
