"""A real single-node Apache Kafka 4.x broker (KRaft, combined mode) from its Maven Central jars.

`fetch_jars` resolves the broker and its runtime dependencies once into a cache folder shared by
every checkout; `LocalBroker` formats storage on first start, runs the JVM detached, waits until
a client round-trip works, and stops it with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import SflsError

KAFKA_VERSION = "4.3.1"
POM = Path(__file__).with_name("kafka_libs") / "pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
JVM_FLAGS = ("-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def default_cache_dir() -> Path:
    """Where the Kafka jars and built tools are cached for every checkout (SFLS_DEVSTACK__CACHE_DIR)."""
    from devstack.settings import load_devstack_settings

    return load_devstack_settings().cache_dir


class DevstackError(SflsError):
    """A local-stack problem with a one-line explanation (missing Java, busy port, ...)."""


def jar_dir(cache_dir: Path) -> Path:
    """Where the broker jars of KAFKA_VERSION live in the cache."""
    return cache_dir / f"kafka-{KAFKA_VERSION}" / "lib"


def fetch_jars(cache_dir: Path) -> Path:
    """Copy the broker jars into `<cache_dir>/kafka-<version>/lib` unless they are already there."""
    lib = jar_dir(cache_dir)
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("Maven (mvn) not found: install it (apt-get install maven) to fetch the Kafka jars")
    partial = lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn,
        "-B",
        "-ntp",
        "-q",
        "-f",
        str(POM),
        DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise DevstackError("could not fetch the Kafka jars from Maven Central: " + " | ".join(tail))
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    marker.write_text(KAFKA_VERSION)
    return lib


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _cluster_id() -> str:
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


@dataclass
class LocalBroker:
    """One broker process whose state (config, data, log, pid) lives under `state_dir`."""

    state_dir: Path
    lib_dir: Path
    port: int = 9092
    controller_port: int = 9093
    java: str = "java"
    extra_properties: dict[str, str] = field(default_factory=dict)
    listeners: str | None = None
    advertised_listeners: str | None = None
    security_protocol_map: str | None = None
    format_args: tuple[str, ...] = ()  # extra `StorageTool format` arguments, e.g. ("--add-scram", "...")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "kafka.log"

    def pid(self) -> int | None:
        """The pid of the running broker, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        return pid

    def _validate(self) -> str:
        """Check what can be checked before touching anything; returns the java binary."""
        for name, port in (("port", self.port), ("controller port", self.controller_port)):
            if not 1 <= port <= 65535:
                raise DevstackError(f"Kafka {name} {port} is not a TCP port (1-65535)")
        if self.port == self.controller_port:
            raise DevstackError(f"Kafka port and controller port are both {self.port}; choose two different ports")
        java = shutil.which(self.java)
        if java is None:
            raise DevstackError(
                f"Java not found ({self.java!r}): install OpenJDK 17+ (apt-get install openjdk-17-jre-headless) "
                "or set SFLS_DEVSTACK__JAVA to the java binary"
            )
        if not (self.lib_dir / ".complete").exists():
            raise DevstackError(f"Kafka jars missing in {self.lib_dir}: run `sfls devstack kafka fetch` first")
        return java

    def running_port(self) -> int | None:
        """The client port the running broker of this state folder was started with."""
        try:
            for line in (self.state_dir / "server.properties").read_text().splitlines():
                if line.startswith("advertised.listeners="):
                    return int(line.rsplit(":", 1)[1].split(",")[0])
        except (OSError, ValueError):
            return None
        return None

    def _write_config(self) -> Path:
        data = self.state_dir / "kraft-logs"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": self.listeners
            or f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": self.advertised_listeners or f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": self.security_protocol_map or "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.cleaner.dedupe.buffer.size": "2097152",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "5000",
            "transaction.remove.expired.transaction.cleanup.interval.ms": "60000",
            **self.extra_properties,
        }
        config = self.state_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.state_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        return config

    def _format(self, java: str, config: Path) -> None:
        if (self.state_dir / "kraft-logs" / "meta.properties").exists():
            return
        command = [
            java,
            "-Xmx256m",
            "-cp",
            f"{self.lib_dir}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(),
            "-c",
            str(config),
            *self.format_args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env={**os.environ, "KAFKA_LOG4J_OPTS": ""}
        )
        if result.returncode != 0:
            raise DevstackError("formatting Kafka storage failed: " + (result.stderr or result.stdout).strip())

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker (format on first start) and return once it serves a client round-trip."""
        java = self._validate()
        if self.pid() is not None:
            running = self.running_port()
            if running is not None and running != self.port:
                raise DevstackError(
                    f"Kafka already runs from {self.state_dir} on port {running}; "
                    "stop it first (sfls devstack kafka down)"
                )
            self.wait_ready(timeout)
            return
        for port in (self.port, self.controller_port):
            if port_in_use(port):
                raise DevstackError(f"port {port} on 127.0.0.1 is already in use; choose another Kafka port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format(java, config)
        command = [
            java,
            *JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp",
            f"{self.lib_dir}/*",
            "kafka.Kafka",
            str(config),
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        try:
            self.wait_ready(timeout, process)
        except DevstackError:
            self.stop()
            raise

    def wait_ready(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the port accepts connections and metadata names broker 1."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise DevstackError(f"Kafka exited with code {process.returncode} during start-up: " + self._log_tail())
            if port_in_use(self.port):
                try:
                    metadata = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=5)
                    if 1 in metadata.brokers:
                        return
                except Exception:  # noqa: BLE001, S110 - not up yet; the deadline decides
                    pass
            time.sleep(0.5)
        raise DevstackError(f"Kafka did not become ready within {timeout:.0f}s: " + self._log_tail())

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 30.0) -> bool:
        """Stop the broker; returns False when none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            _reap(pid)
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
            self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
