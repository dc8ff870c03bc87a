"""The "config" item read into BatchConfig: the optimizer's applied settings win over the deployed ones, and a
missing item means the deployed ones hold."""
from decimal import Decimal

from pipeline import contract
from pipeline.batch_config import BatchConfig
from pipeline.settings import Settings

DEPLOYED = Settings(**{name: default for name, (_, default) in contract.SETTINGS_ENV.items()}
                    | {"batch_size": 200, "batching_window_seconds": 1, "invoke_chunk_size": 50,
                       "latency_slo_seconds": 2.0, "min_batch_size": 10, "max_batch_size": 500})


def test_no_item_means_the_deployed_settings():
    config = BatchConfig.from_item(None, DEPLOYED)
    assert (config.applied, config.batch_size, config.batching_window_seconds, config.invoke_chunk_size) == (
        False, 200, 1, 50)
    assert config.optimizer is None and config.optimizer_state == {} and config.history == []


def test_the_applied_settings_win_and_come_back_as_ints():
    """DynamoDB numbers come back as Decimal (boto3's resource layer); the API and the mapping want ints."""
    item = {"pk": "config", "batch_size": Decimal(350), "batching_window_seconds": Decimal(0),
            "invoke_chunk_size": Decimal(100), "optimizer": {"status": "trained"},
            "optimizer_state": {"rejected": {}}, "history": [{"batch_size": 350}]}
    config = BatchConfig.from_item(item, DEPLOYED)
    assert (config.applied, config.batch_size, config.batching_window_seconds, config.invoke_chunk_size) == (
        True, 350, 0, 100)
    assert all(type(v) is int for v in (config.batch_size, config.batching_window_seconds, config.invoke_chunk_size))
    assert config.optimizer == {"status": "trained"} and config.history == [{"batch_size": 350}]
