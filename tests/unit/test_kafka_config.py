"""The separately packaged Kafka listener (plugins/hookgate-kafka): its configuration errors."""

from __future__ import annotations

import sys

import pytest
from support import ROOT

from gateway.errors import ConfigError

sys.path.insert(0, str(ROOT / "plugins" / "hookgate-kafka"))
import hookgate_kafka


def test_kafka_configuration_errors():
    from gateway import create_app

    with pytest.raises(ConfigError, match="'topics' is required"):
        create_app(
            {
                "listeners": {
                    "orders": {
                        "kind": "kafka",
                        "topics": [],
                        "bootstrap_servers": ["127.0.0.1:9092"],
                        "call": "fakes.triggers:record",
                    }
                }
            },
            plugins=[hookgate_kafka],
        )
