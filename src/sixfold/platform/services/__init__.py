"""Local Apache Kafka (KRaft) and Apache Cassandra as plain Java processes on 127.0.0.1.

Jars come from Maven Central through Maven (`dependency:copy-dependencies` on a small POM kept
beside this file) and are cached under `var/services/<name>-<version>/lib`, so the second run
starts without the network. Configs are written next to them, logs go to `var/services/`.
"""

from sixfold.platform.services.runner import Service, all_services, down, status, up

__all__ = ["Service", "all_services", "down", "status", "up"]
