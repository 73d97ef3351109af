"""Node kinds: what sort of node a task is, as one object the decider, worker and dashboard ask.

A :class:`NodeKind` declares, for every node of its sort:

* its **options**: a frozen pydantic model (:class:`KindOptions`), validated when the node is
  added to its workflow (:meth:`NodeKind.parse_options`); an unknown or ill-typed option raises
  :class:`~deerflow.errors.DefinitionError` naming the workflow and the task;
* what it **decides** besides the generic pending/retry steps: events to add when an attempt of
  the node is scheduled (:meth:`~NodeKind.on_scheduled`: a sub-workflow starts its child run),
  and what to do in a status it owns (:meth:`~NodeKind.decide`: an expanded node schedules and
  collects its children);
* what an attempt **sees** (:meth:`~NodeKind.inputs`, :meth:`~NodeKind.child_inputs`) and
  whether it goes to a worker at all (:meth:`~NodeKind.runs_on_worker`);
* how a **worker runs** it (:meth:`~NodeKind.body`, :meth:`~NodeKind.child_body`,
  :meth:`~NodeKind.on_output`), all synchronous and pure: the runtime awaits the bodies;
* how the **dashboard draws** it (:attr:`~NodeKind.css_class`, :attr:`~NodeKind.label`).

A kind may add **history events** of its own: it lists the
:class:`~deerflow.core.state.FoldExtension` that declares and folds them in
:attr:`~NodeKind.folds` (adding a node of the kind to a workflow registers it). A feature
whose events are read without its definitions (a CLI folding any history) also registers its
extension when it is imported.

``name`` is what the definition's fingerprint records, so several kind objects may share one
(a saga step is a ``task``).

The plain task is :data:`TASK`; features define the others next to their decorators
(patterns: dynamic tasks, fan-out, map-reduce, sub-workflows; sagas: compensations and steps;
state machines: transitions). A kind from anywhere else works the same way::

    class Constant(KindOptions):
        value: int

    class ConstantKind(NodeKind):
        name = "constant"
        options_model = Constant

        def body(self, task):
            return lambda context: self.options(task, Constant).value

    wf.add_task(TaskDef(id="one", fn=None, kind=ConstantKind(), options={"value": 1}))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from deerflow.errors import DefinitionError

if TYPE_CHECKING:  # types only: these modules build on this one
    from deerflow.core import history as h
    from deerflow.core.definition import WorkflowDef
    from deerflow.core.state import FoldExtension, RunState, TaskState
    from deerflow.core.taskdef import TaskDef

__all__ = ["TASK", "KindOptions", "NoOptions", "NodeKind", "TaskKind"]

OptionsT = TypeVar("OptionsT", bound="KindOptions")


class KindOptions(BaseModel):
    """A kind's options: frozen, unknown keys refused, any Python type allowed as a field.

    Readable by key too (``task.options["workflow"]``), as the untyped options dict was.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` if this kind has no such option."""
        return getattr(self, key) if key in self else default


class NoOptions(KindOptions):
    """The options of a kind that takes none."""


NO_OPTIONS = NoOptions()


class NodeKind:
    """What sort of node a task is (see the module docstring); the defaults are a plain task.

    Subclass it and override what differs; an instance is shared by every node of the kind.
    """

    #: recorded in the definition's fingerprint (keep it stable: runs in flight compare it)
    name: str = "task"
    #: what the dashboard and errors call it
    label: str = "task"
    #: drawn as ``kind-<css_class>``; ``None``: by what the run shows (children, child runs)
    css_class: str | None = None
    #: the model ``options`` are validated into
    options_model: type[KindOptions] = NoOptions
    #: the fold extensions of the history events this kind adds (none: the core's only)
    folds: tuple[FoldExtension, ...] = ()

    # -- definition --------------------------------------------------------------------------

    def parse_options(
        self, workflow: str, task_id: str, raw: Mapping[str, Any] | KindOptions
    ) -> KindOptions:
        """``raw`` validated into :attr:`options_model`; :class:`DefinitionError` naming the
        workflow, the task and each bad option otherwise."""
        if isinstance(raw, self.options_model):
            return raw
        data = raw.model_dump() if isinstance(raw, KindOptions) else dict(raw)
        try:
            return self.options_model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
                for err in exc.errors()
            )
            raise DefinitionError(
                f"workflow {workflow!r}, task {task_id!r}: bad {self.label} options: {problems}"
            ) from None

    @staticmethod
    def options(task: TaskDef, model: type[OptionsT]) -> OptionsT:
        """``task``'s options as ``model`` (what :meth:`parse_options` made of them)."""
        opts = task.options
        if not isinstance(opts, model):
            raise TypeError(f"task {task.id!r}: options are not {model.__name__}")
        return opts

    def nested_workflows(self, task: TaskDef) -> Sequence[WorkflowDef]:
        """Workflows a process running ``task`` must know too (a sub-workflow's child)."""
        return ()

    # -- decisions (pure: time is passed in) -------------------------------------------------

    def on_scheduled(
        self, task: TaskDef, state: RunState, attempt: int, now: float
    ) -> list[h.HistoryEvent]:
        """Events decided with the ``TaskScheduled`` of ``attempt`` of the node itself (not of
        its fallback nor its children); events of other runs go to their histories."""
        return []

    def decide(
        self, task: TaskDef, ts: TaskState, state: RunState, now: float, budget: int | None
    ) -> list[h.HistoryEvent]:
        """What the node decides in a status its kind owns (not pending, retrying, running or
        done), and while scheduled when no worker runs it (:meth:`runs_on_worker`): the events
        its :meth:`on_scheduled` added may have been lost with the process that appended them.
        ``budget`` is the run's free slots under ``max_parallel`` (``None``: no limit)."""
        return []

    def runs_on_worker(self, task: TaskDef) -> bool:
        """Whether a scheduled attempt is a task message for a worker."""
        return True

    def inputs(
        self, wf: WorkflowDef, state: RunState, task: TaskDef
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """Tasks whose outcomes an attempt sees in ``context.tasks``, and its ``extra``."""
        return wf.ancestors(task.id), {}

    def child_inputs(
        self, wf: WorkflowDef, state: RunState, node: TaskDef, child_id: str
    ) -> tuple[Iterable[str], dict[str, Any]]:
        """What an attempt of child ``child_id`` of ``node`` sees (kinds with children)."""
        raise LookupError(f"task {node.id!r} ({self.label}) has no child {child_id!r}")

    # -- worker side (synchronous: the runtime runs what these return) ------------------------

    def body(self, task: TaskDef) -> Callable[..., Any] | None:
        """The function an attempt of the node runs with its ``TaskContext``."""
        return task.fn

    def child_body(self, node: TaskDef, extra: Mapping[str, Any]) -> Callable[..., Any]:
        """The function an attempt of a child runs (``extra``: what :meth:`child_inputs` gave)."""
        raise LookupError(f"task {node.id!r} ({self.label}) has no children to run")

    def on_output(self, task: TaskDef, output: Any) -> tuple[Any, list[dict[str, Any]] | None]:
        """The node's recorded output and expansion (child specs) from what its body returned."""
        return output, None

    def __repr__(self) -> str:
        return f"<node kind {self.name!r} ({self.label})>"


class TaskKind(NodeKind):
    """A plain task: its body runs on a worker and its return value is its output."""


#: the plain task, the kind of every ``@workflow.task``
TASK = TaskKind()
