"""The public names are a promise: adding or removing one is a decision, made here."""

import deerflow


def test_public_api_is_pinned():
    assert deerflow.__all__ == sorted(deerflow.__all__, key=str)
    for name in deerflow.__all__:
        assert hasattr(deerflow, name), name
    assert set(deerflow.__all__) >= {
        "CancelOn",
        # flow control on a workflow's runs
        "Batch",
        "Concurrency",
        "Debounce",
        "RateLimit",
        "DefinitionError",
        "Engine",
        "RunResult",
        "Schedule",
        "ScheduleTickEvent",
        "TaskContext",
        "Workflow",
        # runs that wait: a signal to an ended run is refused; what sleep(until=) is given
        "RunEnded",
        "WaitContext",
    }


def test_every_public_name_has_a_docstring():
    for name in deerflow.__all__:
        obj = getattr(deerflow, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"
