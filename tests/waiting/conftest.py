from tests.engine.conftest import store  # noqa: F401 - the same stores as the engine suite
