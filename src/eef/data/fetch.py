"""Download the public expert sets and the WebShop product files (``eef data fetch NAME``).

Hugging Face datasets come through ``huggingface_hub`` (which checks each file against the
hub's published hash); the WebShop files through ``gdown`` from the Google Drive ids WebShop's
``setup.sh`` documents. Each fetched directory gets a ``MANIFEST.json`` with every file's size
and sha256, so a later ``fetch`` (or ``verify``) can tell a complete copy from a damaged one.
Neither library is a dependency of eef: each is imported when needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eef.atomic import write_text_atomic
from eef.errors import EefError, UnknownNameError

MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class Source:
    """A downloadable set.

    Attributes:
        name: what ``eef data fetch`` calls it.
        description: one line for ``eef data fetch --list``.
        hub_dataset: a Hugging Face dataset repository, or None.
        drive_files: (Google Drive id, file name) pairs, for files published there.
    """

    name: str
    description: str
    hub_dataset: str | None = None
    drive_files: tuple[tuple[str, str], ...] = ()


_HUMAN_GOALS = ("14Kb5SPBk_jfdLZ_CDBNitW98QLDlKR5O", "items_human_ins.json")
SOURCES = {
    s.name: s
    for s in (
        Source(
            "eef-expert",
            "the EEF authors' GPT-4 / GPT-3.5 WebShop and ScienceWorld trajectories (--format eef-expert)",
            hub_dataset="lclan/webshop_expert_trajectories",
        ),
        Source(
            "eto",
            "ETO's SFT trajectories for WebShop, ScienceWorld and ALFWorld (--format eto)",
            hub_dataset="agent-eto/eto-sft-trajectory",
        ),
        Source("agenttraj-l", "AgentGym's AgentTraj-L (--format agentgym)", hub_dataset="AgentGym/AgentTraj-L"),
        Source(
            "webshop-1k",
            "WebShop's 1,000 products, synthetic and human goals (option data_dir=)",
            drive_files=(
                ("1EgHdxQ_YxqIQlvvq5iKlCrkEKR6-j0Ib", "items_shuffle_1000.json"),
                ("1IduG0xl544V_A_jv3tHXC0kyFi7PnyBu", "items_ins_v2_1000.json"),
                _HUMAN_GOALS,
            ),
        ),
        Source(
            "webshop-full",
            "WebShop's 1.18M products (about 5 GB), synthetic and human goals (option data_dir=)",
            drive_files=(
                ("1A2whVgOO0euk5O13n2iYDM0bQRkkRduB", "items_shuffle.json"),
                ("1s2j6NgHljiZzQNL3veZaAiyW_qDEgBNi", "items_ins_v2.json"),
                _HUMAN_GOALS,
            ),
        ),
    )
}

HubDownload = Callable[[str, Path], None]
DriveDownload = Callable[[str, Path], None]


def download_hub_dataset(repo_id: str, target: Path) -> None:
    """Every file of a Hugging Face dataset repository into ``target``."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise EefError(
            "fetching from the Hugging Face hub needs huggingface_hub: pip install huggingface_hub"
        ) from None
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", local_dir=str(target))
    except Exception as e:  # network, authentication, a missing repository: the hub's own error types vary
        raise EefError(f"could not download the dataset {repo_id} from the Hugging Face hub: {e}") from e


def download_drive_file(file_id: str, target: Path) -> None:
    """One Google Drive file to ``target``."""
    try:
        import gdown
    except ImportError:
        raise EefError(
            "fetching from Google Drive needs gdown: pip install gdown "
            f"(or download https://drive.google.com/uc?id={file_id} to {target} yourself)"
        ) from None
    try:
        saved = gdown.download(id=file_id, output=str(target), quiet=False)
    except Exception as e:  # gdown raises its own and requests' errors
        raise EefError(f"could not download https://drive.google.com/uc?id={file_id}: {e}") from e
    if saved is None:
        raise EefError(f"could not download https://drive.google.com/uc?id={file_id}")


def file_digests(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {bytes, sha256}}`` of every file under ``directory`` but the manifest and
    the hub's download cache."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST or relative.startswith(".cache/"):
            continue
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[relative] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


def verify(directory: str | Path) -> list[str]:
    """Problems of a fetched directory against its manifest (empty when it is intact)."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing"]
    try:
        recorded = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:  # a torn or hand-edited manifest
        return [f"{manifest_path}: unreadable ({type(e).__name__}: {e})"]
    present = file_digests(directory)
    problems = [f"{name}: missing" for name in recorded if name not in present]
    problems += [
        f"{name}: sha256 differs from the manifest"
        for name in recorded
        if name in present and present[name]["sha256"] != recorded[name]["sha256"]
    ]
    return problems


def fetch(
    name: str,
    data_dir: str | Path,
    *,
    force: bool = False,
    hub: HubDownload = download_hub_dataset,
    drive: DriveDownload = download_drive_file,
) -> Path:
    """Download ``name`` into ``data_dir/name`` and write its manifest.

    Args:
        name: one of :data:`SOURCES`.
        data_dir: the data directory.
        force: download again even when an intact copy is there.
        hub: downloads a hub dataset (replaced in tests).
        drive: downloads a Google Drive file (replaced in tests).

    Returns:
        The directory holding the files.

    Raises:
        UnknownNameError: an unknown name.
        EefError: a download failed or its library is missing.
    """
    if name not in SOURCES:
        raise UnknownNameError("data set", name, sorted(SOURCES))
    source = SOURCES[name]
    target = Path(data_dir) / name
    if not force and (target / MANIFEST).is_file() and not verify(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    if source.hub_dataset:
        hub(source.hub_dataset, target)
    for file_id, filename in source.drive_files:
        drive(file_id, target / filename)
    manifest = {
        "source": name,
        "hub_dataset": source.hub_dataset,
        "drive_files": [{"id": i, "file": f} for i, f in source.drive_files],
        "files": file_digests(target),
    }
    write_text_atomic(target / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return target
