from tests.engine.conftest import store  # noqa: F401 - the same stores as the engine suite
from tests.processes import kafka_workers  # noqa: F401 - worker processes on Kafka
