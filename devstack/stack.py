"""The whole local stack: Kafka plus both emulators, started as detached processes.

`up` starts whatever is not running, waits for each to answer, and writes `stack.json` in the state
folder: the connection settings of all three, which an `sfls` command reads only when SFLS_STACK_FILE
names that file (`shared/settings.py`).
`down` stops everything `up` started; `status` says what runs where.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.kafka import DevstackError, LocalBroker, fetch_jars, jar_dir, port_in_use
from devstack.salesforce.store import ORG_ID
from devstack.settings import DevstackSettings
from devstack.tls import ensure_ca
from shared.config_sources import STACK_FILE_ENV

SALESFORCE_CREDENTIALS = {
    "client_id": "sfls-devstack-consumer-key",
    "client_secret": "sfls-devstack-consumer-secret",
    "username": "integration@sfls.devstack",
    "password": "devstack-password",
}
LOGISENSE_CREDENTIALS = {
    "client_id": "044b8ad6006845c29446b2f18e5b5909",
    "username": "sfls-integration",
    "password": "devstack-password",
}


@dataclass(frozen=True)
class EmulatorProcess:
    """An emulator run as `python -m devstack.<name>` with its pid and log in the state folder."""

    name: str
    port: int
    state_dir: Path
    args: tuple[str, ...] = ()
    extra_ports: tuple[int, ...] = ()  # further ports it listens on (the Salesforce emulator's Pub/Sub API)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, ca_file: Path, timeout: float = 30.0) -> None:
        if self.pid() is not None:
            return
        for port in (self.port, *self.extra_ports):
            if port_in_use(port):
                raise DevstackError(f"port {port} on 127.0.0.1 is already in use; choose another {self.name} port")
        command = [
            sys.executable,
            "-m",
            f"devstack.{self.name}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            *self.args,
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(str(process.pid))
        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise DevstackError(f"{self.name} emulator exited with code {process.returncode}; see {self.log_file}")
            try:
                with urllib.request.urlopen(f"{self.url}/__admin/health", context=context, timeout=2) as response:  # noqa: S310 - our own https URL
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise DevstackError(f"{self.name} emulator did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


@dataclass(frozen=True)
class Stack:
    """Kafka, the Salesforce emulator and the LogiSense emulator under one state folder."""

    state_dir: Path
    cache_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    salesforce_port: int = 8443
    logisense_port: int = 8444
    salesforce_pubsub_port: int = 7443
    java: str = "java"

    @classmethod
    def from_settings(cls, settings: DevstackSettings) -> Stack:
        return cls(
            state_dir=settings.state_dir.resolve(),
            cache_dir=settings.cache_dir,
            kafka_port=settings.kafka_port,
            kafka_controller_port=settings.kafka_controller_port,
            salesforce_port=settings.salesforce_port,
            logisense_port=settings.logisense_port,
            salesforce_pubsub_port=settings.salesforce_pubsub_port,
            java=settings.java,
        )

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def environment(self) -> dict[str, str]:
        """What points an `sfls` command at this stack."""
        return {STACK_FILE_ENV: str(self.stack_file)}

    def broker(self) -> LocalBroker:
        return LocalBroker(
            state_dir=self.state_dir / "kafka",
            lib_dir=jar_dir(self.cache_dir),
            port=self.kafka_port,
            controller_port=self.kafka_controller_port,
            java=self.java,
        )

    def salesforce(self) -> EmulatorProcess:
        creds = SALESFORCE_CREDENTIALS
        return EmulatorProcess(
            "salesforce",
            self.salesforce_port,
            self.state_dir,
            (
                "--client-id",
                creds["client_id"],
                "--client-secret",
                creds["client_secret"],
                "--username",
                creds["username"],
                "--password",
                creds["password"],
                "--pubsub-port",
                str(self.salesforce_pubsub_port),
            ),
            (self.salesforce_pubsub_port,),
        )

    def logisense(self) -> EmulatorProcess:
        creds = LOGISENSE_CREDENTIALS
        return EmulatorProcess(
            "logisense",
            self.logisense_port,
            self.state_dir,
            (
                "--client-id",
                creds["client_id"],
                "--username",
                creds["username"],
                "--password",
                creds["password"],
            ),
        )

    def describe(self) -> dict[str, Any]:
        """The stack.json contract (shown in the README's local-stack section)."""
        ca_file = str(self.state_dir / "ca.pem")
        sf, ls = self.salesforce(), self.logisense()
        return {
            "kafka": {"bootstrap_servers": self.broker().bootstrap_servers},
            "salesforce": {
                "instance_url": sf.url,
                "api_version": "62.0",
                "ca_file": ca_file,
                **SALESFORCE_CREDENTIALS,
                "admin_url": f"{sf.url}/__admin",
                "pubsub_endpoint": f"localhost:{self.salesforce_pubsub_port}",
                "org_id": ORG_ID,
            },
            "logisense": {
                "base_url": ls.url,
                "api_version": "v10",
                "ca_file": ca_file,
                **LOGISENSE_CREDENTIALS,
                "admin_url": f"{ls.url}/__admin",
            },
        }

    def up(self, timeout: float = 120.0) -> dict[str, Any]:
        ca = ensure_ca(self.state_dir)
        fetch_jars(self.cache_dir)
        self.broker().start(timeout)
        self.salesforce().start(ca.ca_file)
        self.logisense().start(ca.ca_file)
        description = self.describe()
        self.stack_file.write_text(json.dumps(description, indent=2) + "\n")
        return description

    def down(self) -> list[str]:
        stopped = [p.name for p in (self.salesforce(), self.logisense()) if p.stop()]
        if self.broker().stop():
            stopped.append("kafka")
        self.stack_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, str]:
        broker = self.broker()
        result = {"kafka": f"running (pid {broker.pid()}) on {broker.bootstrap_servers}" if broker.pid() else "stopped"}
        for process in (self.salesforce(), self.logisense()):
            pid = process.pid()
            result[process.name] = f"running (pid {pid}) on {process.url}" if pid else "stopped"
        return result
