"""Local Apache Kafka (KRaft), Apache Cassandra, Memcached and a Spark standalone master and worker as plain
processes on 127.0.0.1.

Kafka's and Cassandra's jars come from Maven Central through Maven (`dependency:copy-dependencies` on a
small POM kept beside this file) and are cached under `var/services/<name>-<version>/lib`, so the second
run starts without the network; Spark's are the installed pyspark's own. Configs are written next to
them, logs go to `var/services/`.
"""

from sixfold.platform.services.runner import Service, all_services, down, spark_services, status, up

__all__ = ["Service", "all_services", "down", "spark_services", "status", "up"]
