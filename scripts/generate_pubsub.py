"""Generate the Pub/Sub API message modules from services/listener/pubsub/pubsub_api.proto.

    python scripts/generate_pubsub.py            (writes pubsub_api_pb2.py and .pyi beside the proto)
    python scripts/generate_pubsub.py --check    (exit 1 when the committed modules differ)

grpcio-tools (a dev dependency, pinned beside grpcio in constraints.txt) runs protoc; the generated code
checks the protobuf runtime version, so regenerate after moving either pin. Only message modules are
generated: the client (services/listener/pubsub/client.py) and the emulator call the RPCs by their method
paths, so no untyped service stubs are needed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "services" / "listener" / "pubsub"
PROTO = "pubsub_api.proto"
OUTPUTS = ("pubsub_api_pb2.py", "pubsub_api_pb2.pyi")


def generate(into: Path) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    shutil.copy(HERE / PROTO, into / PROTO)
    code = protoc.main(["protoc", f"-I{into}", f"--python_out={into}", f"--pyi_out={into}", str(into / PROTO)])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code} on {HERE / PROTO}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed modules instead of writing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        stale = [
            name
            for name in OUTPUTS
            if not (HERE / name).exists() or (HERE / name).read_bytes() != (out / name).read_bytes()
        ]
        if args.check:
            for name in stale:
                sys.stderr.write(f"{HERE / name} differs from what {PROTO} generates: run scripts/generate_pubsub.py\n")
            return 1 if stale else 0
        for name in OUTPUTS:
            shutil.copy(out / name, HERE / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
