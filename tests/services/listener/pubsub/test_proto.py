"""The committed Pub/Sub message modules are what services/listener/pubsub/pubsub_api.proto generates, and the
contract's names and numbers are those of `eventbus.v1.PubSub` (scripts/generate_pubsub.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.listener.pubsub import pubsub_api_pb2 as pb

ROOT = Path(__file__).resolve().parents[4]


def test_the_committed_modules_are_regenerated_identically() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_pubsub.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_service_and_the_fields_that_matter_on_the_wire() -> None:
    service = pb.DESCRIPTOR.services_by_name["PubSub"]
    assert service.full_name == "eventbus.v1.PubSub"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "Subscribe": (True, True),
        "GetSchema": (False, False),
        "GetTopic": (False, False),
        "Publish": (False, False),
        "PublishStream": (True, True),
        "ManagedSubscribe": (True, True),
    }
    fetch = {f.name: f.number for f in pb.FetchRequest.DESCRIPTOR.fields}
    assert fetch == {"topic_name": 1, "replay_preset": 2, "replay_id": 3, "num_requested": 4, "auth_refresh": 5}
    response = {f.name: f.number for f in pb.FetchResponse.DESCRIPTOR.fields}
    assert response == {"events": 1, "latest_replay_id": 2, "rpc_id": 3, "pending_num_requested": 4}
    assert (pb.LATEST, pb.EARLIEST, pb.CUSTOM) == (0, 1, 2)
