"""Fetch, configure, start, health-check and stop the local servers: Kafka, Cassandra, Memcached and a
Spark standalone master and worker (from the installed pyspark's own jars, nothing fetched)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.settings import Settings

HERE = resources.files("sixfold.platform.services")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); read its state to be sure.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


@dataclass
class Service:
    """One local server: where its files live, how to start it, how to tell it is healthy."""

    name: str
    version: str
    settings: Settings
    main_class: str
    heap: str
    ports: tuple[int, ...]
    start_timeout_s: float

    @property
    def root(self) -> Path:
        return self.settings.services_dir / self.name

    @property
    def lib(self) -> Path:
        return self.settings.services_dir / "cache" / f"{self.name}-{self.version}" / "lib"

    @property
    def log_file(self) -> Path:
        return self.settings.services_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    # ---- fetch -------------------------------------------------------------------------
    def fetch(self, log: Callable[[str], None] = print) -> Path:
        marker = self.lib / ".complete"
        if marker.exists():
            return self.lib
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (`mvn`) is not on PATH; install it (apt-get install maven) to fetch service jars")
        work = self.lib.parent
        work.mkdir(parents=True, exist_ok=True)
        pom = (HERE / f"{self.name}.pom.xml").read_text().replace("@VERSION@", self.version)
        (work / "pom.xml").write_text(pom)
        log(f"fetching {self.name} {self.version} from Maven Central into {self.lib} ...")
        if self.lib.exists():
            shutil.rmtree(self.lib)
        proc = subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={self.lib}",
             "-DincludeScope=runtime"],
            cwd=work, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"Maven could not fetch {self.name} {self.version}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        marker.write_text(self.version)
        return self.lib

    # ---- per-service hooks (overridden) --------------------------------------------------
    def prepare(self) -> list[str]:
        """Write configs; return JVM arguments after the heap and before the main class."""
        raise NotImplementedError

    def program_args(self) -> list[str]:
        return []

    def command(self) -> list[str]:
        """The server's command line (a JVM with the fetched jars, unless a service says otherwise)."""
        jvm = self.prepare()
        java = shutil.which("java") or "java"
        return [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", *jvm,
                "-cp", f"{self.lib}/*", self.main_class, *self.program_args()]

    def environment(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def healthy(self) -> str | None:
        """A short description of the running server (its version) when healthy, else None."""
        raise NotImplementedError

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, log: Callable[[str], None] = print) -> str:
        """Start the server unless it runs, and wait until it is healthy. Two `start`s at once (two
        `sixfold services up`, two test processes) take turns on a lock file: the second finds the
        first's server running instead of meeting its port."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "start.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._start(log)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start(self, log: Callable[[str], None]) -> str:
        running = self.pid()
        if running:
            report = self.wait_healthy(running)
            return f"{self.name} already running (pid {running}): {report}"
        deadline = time.monotonic() + 15  # a server that just stopped may hold its ports a moment longer
        busy = [p for p in self.ports if port_open("127.0.0.1", p, 0.5)]
        while busy and time.monotonic() < deadline:
            time.sleep(0.5)
            busy = [p for p in self.ports if port_open("127.0.0.1", p, 0.5)]
        if busy:
            raise RuntimeError(
                f"{self.name}: port(s) {busy} on 127.0.0.1 are taken by another process; stop it or free the ports"
            )
        self.fetch(log)
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        (self.root / "command").write_text(" ".join(cmd) + "\n")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab")
        out.write(f"\n==== starting {self.name} {self.version} at {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.root, env=self.environment(), start_new_session=True)
        out.close()
        self.pid_file.write_text(str(proc.pid))
        log(f"started {self.name} {self.version} (pid {proc.pid}); waiting until healthy ...")
        report = self.wait_healthy(proc.pid, proc)
        return f"{self.name} up (pid {proc.pid}): {report}"

    def wait_healthy(self, pid: int, proc: subprocess.Popen | None = None) -> str:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if (proc is not None and proc.poll() is not None) or not pid_alive(pid):
                raise RuntimeError(f"{self.name} exited during start-up; last log lines:\n{self.tail_log()}")
            try:
                report = self.healthy()
            except Exception:  # noqa: BLE001 - any failure here means "not yet"
                report = None
            if report:
                return report
            time.sleep(1.0)
        raise RuntimeError(f"{self.name} not healthy after {self.start_timeout_s:.0f}s; see {self.log_file}:\n{self.tail_log()}")

    def stop(self, timeout_s: float = 60.0) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return f"{self.name} not running"
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.3)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            how = "killed after not stopping in time"
        else:
            how = "stopped"
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name} {how} (pid {pid})"

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"{self.name} {self.version}: not running"
        try:
            report = self.healthy()
        except Exception as exc:  # noqa: BLE001
            report = None
            detail = str(exc)
        else:
            detail = ""
        return f"{self.name} {self.version}: pid {pid}, " + (f"healthy: {report}" if report else f"not answering {detail}")

    def tail_log(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


class Kafka(Service):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            name="kafka", version=settings.kafka_version, settings=settings, main_class="kafka.Kafka",
            heap="512m", ports=(settings.kafka_bootstrap[1], settings.kafka_controller_port), start_timeout_s=120,
        )

    def prepare(self) -> list[str]:
        host, port = "127.0.0.1", self.settings.kafka_bootstrap[1]
        ctl = self.settings.kafka_controller_port
        data = self.root / "data"
        props = self.root / "server.properties"
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{ctl}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "auto.create.topics.enable=true",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "num.network.threads=2",
            "num.io.threads=2",
            "log.retention.hours=168",
            "",
        ]))
        log4j = self.root / "log4j2.properties"
        log4j.write_text("\n".join([
            "status = warn",
            "appender.out.type = Console",
            "appender.out.name = STDOUT",
            "appender.out.layout.type = PatternLayout",
            "appender.out.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.out.ref = STDOUT",
            "logger.kafka.name = kafka", "logger.kafka.level = WARN",
            "logger.org.name = org.apache.kafka", "logger.org.level = WARN",
            "logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser", "logger.appinfo.level = INFO",
            "logger.server.name = kafka.server.KafkaRaftServer", "logger.server.level = INFO",
            "",
        ]))
        jvm = [f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.root}"]
        if not (data / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):  # the storage tool would read a leading '-' as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            java = shutil.which("java") or "java"
            fmt = subprocess.run(
                [java, "-Xmx256m", *jvm, "-cp", f"{self.lib}/*", "kafka.tools.StorageTool", "format",
                 "-t", cluster_id, "-c", str(props), "--ignore-formatted"],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        return jvm

    def program_args(self) -> list[str]:
        return [str(self.root / "server.properties")]

    def healthy(self) -> str | None:
        from kafka import KafkaAdminClient

        host, port = self.settings.kafka_bootstrap
        if not port_open(host, port):
            return None
        admin = KafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=5000,
                                 bootstrap_timeout_ms=5000, client_id="sixfold-health")
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        brokers = cluster.get("brokers") or []
        if not brokers:
            return None
        return f"Kafka {self.reported_version()} (KRaft, cluster {cluster.get('cluster_id')}, {len(brokers)} broker) on {host}:{port}"

    def reported_version(self) -> str:
        """The version the broker itself logs at start ('Kafka version: X')."""
        version = "?"
        try:
            for line in self.log_file.read_text(errors="replace").splitlines():
                if "Kafka version:" in line:
                    version = line.split("Kafka version:")[1].split()[0]
        except OSError:
            pass
        return version


class Cassandra(Service):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            name="cassandra", version=settings.cassandra_version, settings=settings,
            main_class="org.apache.cassandra.service.CassandraDaemon",
            heap="1G", ports=(settings.cassandra_contact[1], 7000, 7199), start_timeout_s=240,
        )

    def prepare(self) -> list[str]:
        data = self.root / "data"
        port = self.settings.cassandra_contact[1]
        yaml_path = self.root / "cassandra.yaml"
        yaml_path.write_text(f"""\
cluster_name: 'sixfold-dev'
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: 7000
native_transport_port: {port}
start_native_transport: true
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:7000"
# group commit: a write is acknowledged only once its commitlog segment is synced, so a killed
# node loses nothing it acknowledged (periodic mode may lose the last 10 s).
commitlog_sync: group
commitlog_sync_group_window: 10ms
data_file_directories: [{data}/data]
commitlog_directory: {data}/commitlog
saved_caches_directory: {data}/saved_caches
hints_directory: {data}/hints
concurrent_compactors: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
key_cache_size: 16MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
# a lightweight transaction is several synced commitlog writes: on a shared two-core machine the
# defaults (2 s, 1 s of contention) time out under a few racing writers, and a timed-out
# compare-and-set has an unknown outcome
write_request_timeout: 5000ms
cas_contention_timeout: 5000ms
paxos_variant: v2
""")
        logback = self.root / "logback.xml"
        logback.write_text("""<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d %-5level [%thread] %logger{30} %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
""")
        jamm = sorted(self.lib.glob("jamm-*.jar"))
        opens = [
            "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
            "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
            "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
            "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
            "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
            "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
            "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
            "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
            "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
        ]
        for mod in ["java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
                    "java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
                    "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
                    "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect",
                    "jdk.compiler/com.sun.tools.javac", "java.base/java.lang", "java.base/java.util"]:
            opens += ["--add-opens", f"{mod}=ALL-UNNAMED"]
        return [
            "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1", "-XX:G1HeapRegionSize=16m",
            "-XX:MaxGCPauseMillis=300", "-XX:InitiatingHeapOccupancyPercent=70",
            "-Djdk.attach.allowAttachSelf=true", *opens,
            "-Dio.netty.tryReflectionSetAccessible=true", "-Dio.netty.allocator.useCacheForAllThreads=true",
            "-Dio.netty.allocator.maxOrder=11",
            *([f"-javaagent:{jamm[0]}"] if jamm else []),
            f"-Dcassandra.config=file://{yaml_path}",
            f"-Dlogback.configurationFile={logback}",
            f"-Dcassandra.logdir={self.root}",
            f"-Dcassandra.storagedir={data}",
            "-Dcassandra.jmx.local.port=7199",
            "-Dcom.sun.management.jmxremote.authenticate=false",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        ]

    def healthy(self) -> str | None:
        host, port = self.settings.cassandra_contact
        if not port_open(host, port):
            return None
        from cassandra.cluster import Cluster

        cluster = Cluster([host], port=port, connect_timeout=5, control_connection_timeout=5, protocol_version=5)
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local", timeout=5).one()
        finally:
            cluster.shutdown()
        return f"Cassandra {row.release_version} on {host}:{port}"


class Memcached(Service):
    """Debian's memcached (the shortener's shared redirect cache), when the cluster profile asks for it."""

    def __init__(self, settings: Settings) -> None:
        from sixfold.platform.settings import _parse_hostport

        self.host, port = _parse_hostport("SIXFOLD_SHORTENER_MEMCACHED", settings.shortener_memcached or
                                          "127.0.0.1:11211", 11211)
        version = "debian"
        super().__init__("memcached", version, settings, main_class="", heap="", ports=(port,), start_timeout_s=30)

    def fetch(self, log: Callable[[str], None] = print) -> Path:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not Path(binary).exists():
            raise RuntimeError("memcached is not installed; install it (apt-get install memcached, or "
                               "bash scripts/system-deps.sh)")
        return Path(binary)

    def command(self) -> list[str]:
        cmd = [str(self.fetch()), "-l", self.host, "-p", str(self.ports[0]), "-U", "0", "-m", "256", "-c", "4096",
               "-t", "2"]
        return cmd + (["-u", "nobody"] if os.geteuid() == 0 else [])  # memcached refuses to run as root

    def healthy(self) -> str | None:
        with socket.create_connection((self.host, self.ports[0]), timeout=1) as conn:
            conn.sendall(b"version\r\n")
            answer = conn.recv(128).decode("ascii", "replace").strip()
        return f"memcached {answer.removeprefix('VERSION ')} on {self.host}:{self.ports[0]}" \
            if answer.startswith("VERSION") else None


# ---- Spark standalone: a master and one worker, as `spark-class` would start them ----------------------
SPARK_MASTER_UI_PORT = 8090  # 8080, Spark's default, is Airflow's UI (`sixfold airflow standalone`); compose uses 8090 too
SPARK_WORKER_UI_PORT = 8091
SPARK_DAEMON_HEAP = "256m"  # the daemons only schedule and supervise (spark-class gives each 1g)
# What Spark's launcher adds to every JVM it starts on Java 17 (org.apache.spark.launcher.JavaModuleOptions).
SPARK_JAVA_OPTIONS = [
    "-XX:+IgnoreUnrecognizedVMOptions", "--add-modules=jdk.incubator.vector",
    *(f"--add-opens={module}=ALL-UNNAMED" for module in (
        "java.base/java.lang", "java.base/java.lang.invoke", "java.base/java.lang.reflect", "java.base/java.io",
        "java.base/java.net", "java.base/java.nio", "java.base/java.util", "java.base/java.util.concurrent",
        "java.base/java.util.concurrent.atomic", "java.base/jdk.internal.ref", "java.base/sun.nio.ch",
        "java.base/sun.nio.cs", "java.base/sun.security.action", "java.base/sun.util.calendar",
        "java.security.jgss/sun.security.krb5")),
    "-Djdk.reflect.useDirectMethodHandle=false", "-Dio.netty.tryReflectionSetAccessible=true",
]


def spark_master_address(settings: Settings) -> tuple[str, int]:
    """Where the local master listens: SIXFOLD_SPARK_MASTER's port when it is a spark:// URL, else 7077."""
    from sixfold.platform.spark import master_address

    address = master_address(settings.spark_master)
    return ("127.0.0.1", address[1]) if address else ("127.0.0.1", 7077)


class SparkDaemon(Service):
    """A Spark standalone daemon run from the installed pyspark distribution: its jars, its home."""

    def __init__(self, name: str, settings: Settings, main_class: str, ports: tuple[int, ...]) -> None:
        import pyspark

        self.spark_home = Path(pyspark.__file__).resolve().parent
        super().__init__(name=name, version=pyspark.__version__, settings=settings, main_class=main_class,
                         heap=SPARK_DAEMON_HEAP, ports=ports, start_timeout_s=90)
        self.host, self.master_port = spark_master_address(settings)

    @property
    def lib(self) -> Path:
        return self.spark_home / "jars"

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    def fetch(self, log: Callable[[str], None] = print) -> Path:
        if not any(self.lib.glob("spark-core_*.jar")):
            raise RuntimeError(f"no Spark jars in {self.lib}; reinstall the full `pyspark` package (`pyspark-client` "
                               "has none)")
        return self.lib

    def prepare(self) -> list[str]:
        return SPARK_JAVA_OPTIONS

    def environment(self) -> dict[str, str]:
        scala = next(self.lib.glob("spark-core_*.jar")).name.split("_")[1].split("-")[0]
        return {
            **os.environ,
            # The worker builds each executor's command from SPARK_HOME (its jars) and the Scala version,
            # as spark-class's load-spark-env.sh would set them; executors run this venv's Python.
            "SPARK_HOME": str(self.spark_home), "SPARK_SCALA_VERSION": scala, "SPARK_LOCAL_IP": self.host,
            "PYSPARK_PYTHON": sys.executable, "TZ": "UTC",
        }

    def master_state(self) -> dict:
        """The master's own report (its UI's /json): status, workers with their state, cores and memory."""
        import httpx

        return httpx.get(f"http://{self.host}:{SPARK_MASTER_UI_PORT}/json/", timeout=3).json()


class SparkMaster(SparkDaemon):
    def __init__(self, settings: Settings) -> None:
        super().__init__("spark-master", settings, "org.apache.spark.deploy.master.Master",
                         ports=(spark_master_address(settings)[1], SPARK_MASTER_UI_PORT))

    def program_args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.master_port), "--webui-port", str(SPARK_MASTER_UI_PORT)]

    def healthy(self) -> str | None:
        """ALIVE at the URL jobs use, in the master's own report (no probe of 7077: each logs a disconnect)."""
        state = self.master_state()
        if state.get("status") != "ALIVE" or state.get("url") != self.master_url:
            return None
        alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        return (f"Spark {self.version} master {self.master_url} ({len(alive)} worker(s) alive, "
                f"{state.get('cores', 0)} cores), UI http://{self.host}:{SPARK_MASTER_UI_PORT}")


class SparkWorker(SparkDaemon):
    """One worker with every core of this machine (two at least) and 1 GiB for executors per core."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("spark-worker", settings, "org.apache.spark.deploy.worker.Worker",
                         ports=(SPARK_WORKER_UI_PORT,))

    def program_args(self) -> list[str]:
        from sixfold.platform.spark import CORES

        return [self.master_url, "--host", self.host, "--cores", str(CORES), "--memory", f"{CORES}g",
                "--webui-port", str(SPARK_WORKER_UI_PORT), "--work-dir", str(self.root / "work")]

    def prepare(self) -> list[str]:
        # Executors' files (their logs, the job's Python files) go under work/; finished apps' after a day.
        return [*SPARK_JAVA_OPTIONS, "-Dspark.worker.cleanup.enabled=true",
                "-Dspark.worker.cleanup.appDataTtl=86400"]

    def healthy(self) -> str | None:
        """Registered with the master and ALIVE there (the master's view, which decides where executors run)."""
        ui = f"http://{self.host}:{SPARK_WORKER_UI_PORT}"
        for worker in self.master_state().get("workers", []):
            if worker.get("webuiaddress") == ui and worker.get("state") == "ALIVE":
                return (f"Spark {self.version} worker {worker.get('id')} ALIVE at {self.master_url}: "
                        f"{worker.get('cores')} cores, {worker.get('memory')} MiB for executors")
        return None


def spark_services(settings: Settings) -> list[Service]:
    return [SparkMaster(settings), SparkWorker(settings)]


def needs_local_spark(settings: Settings) -> bool:
    """Whether the profile runs jobs on a standalone master on this machine (the cluster default)."""
    from sixfold.platform.spark import master_address, on_this_machine

    return (settings.profile == "cluster" and master_address(settings.spark_master) is not None
            and on_this_machine(settings.spark_master))


def all_services(settings: Settings) -> list[Service]:
    """What the profile uses: Kafka and Cassandra; Memcached too when the settings name one, and the Spark
    master and worker when the cluster profile's master is on this machine (both are the cluster defaults)."""
    return [Kafka(settings), Cassandra(settings), *([Memcached(settings)] if settings.shortener_memcached else []),
            *(spark_services(settings) if needs_local_spark(settings) else [])]


def _pick(settings: Settings, names: list[str] | None) -> list[Service]:
    """The named services (any of them, whatever the profile; `spark` is the master and the worker) in start
    order, or with no names what the profile uses."""
    if not names:
        return all_services(settings)
    known: dict[str, Service] = {s.name: s for s in [Kafka(settings), Cassandra(settings), Memcached(settings),
                                                     *spark_services(settings)]}
    unknown = [n for n in names if n not in known and n != "spark"]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; choose from {sorted(known)} (spark: master and worker)")
    wanted = {n for name in names for n in (("spark-master", "spark-worker") if name == "spark" else (name,))}
    return [service for name, service in known.items() if name in wanted]  # in start order, whatever the names


def up(settings: Settings, names: list[str] | None = None, log: Callable[[str], None] = print) -> list[str]:
    return [service.start(log) for service in _pick(settings, names)]


def down(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Stop in the reverse order of `up` (a Spark worker before its master)."""
    return [service.stop() for service in reversed(_pick(settings, names))]


def status(settings: Settings, names: list[str] | None = None) -> list[str]:
    return [service.status() for service in _pick(settings, names)]


__all__ = ["Service", "Kafka", "Cassandra", "Memcached", "SparkMaster", "SparkWorker", "ServiceUnavailable", "all_services",
           "spark_services", "up", "down", "status", "port_open"]
