"""Download the public expert sets, ETO's task lists and the WebShop product files
(``eef data fetch NAME``).

Hugging Face datasets come through ``huggingface_hub``: every file the repository lists at its
current commit (names with spaces and subfolders included), checked by the hub against its
published hashes and then checked here to have all arrived. The WebShop files come through
``gdown`` from the Google Drive ids WebShop's ``setup.sh`` documents; ETO's task lists from
GitHub at a pinned commit, each checked against the sha256 it had there. Each fetched directory
gets a ``MANIFEST.json`` with every file's size and sha256 (and the hub commit), so a later
``fetch`` (or ``verify``) can tell a complete copy from a damaged one. Neither library is a
dependency of eef: each is imported when needed.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eef.atomic import write_text_atomic
from eef.errors import DataError, EefError, UnknownNameError

MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class UrlFile:
    """A file published at a fixed address, with the sha256 it must have.

    Attributes:
        url: where it is downloaded from.
        file: where it goes, relative to the fetched directory.
        sha256: its digest at the pinned version (a changed or damaged download is refused).
    """

    url: str
    file: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """A downloadable set.

    Attributes:
        name: what ``eef data fetch`` calls it.
        description: one line for ``eef data fetch --list``.
        hub_dataset: a Hugging Face dataset repository, or None.
        drive_files: (Google Drive id, file name) pairs, for files published there.
        url_files: files published at fixed addresses.
    """

    name: str
    description: str
    hub_dataset: str | None = None
    drive_files: tuple[tuple[str, str], ...] = ()
    url_files: tuple[UrlFile, ...] = ()


@dataclass(frozen=True)
class HubSnapshot:
    """What a hub download brought: the repository's commit and every file it lists there."""

    revision: str
    files: tuple[str, ...]


# ETO's task lists (github.com/Yifan-Song793/ETO, eval_agent/data/), unchanged since its first
# commit; pinned to the commit they were read at, with the sha256 each file had there.
ETO_COMMIT = "a2fc5da38f8d00cfaf3f9b6370d586eebaf72904"
_ETO_RAW = f"https://raw.githubusercontent.com/Yifan-Song793/ETO/{ETO_COMMIT}/eval_agent/data"


@dataclass(frozen=True)
class EtoTaskList:
    """One of ETO's task lists: the eef environment and split it is, and its file in ETO's tree."""

    env: str
    split: str
    file: str
    sha256: str


# WebShop's lists hold goal indices (WebShop session numbers over its shuffled human goals);
# ScienceWorld's [task name, variation] pairs. ETO's WebShop loader reads only train_indices.json
# and test_indices.json (every split but train gets the test list); test_indices_500.json sits
# beside them unused.
ETO_TASK_LISTS = (
    EtoTaskList(
        "webshop",
        "train",
        "webshop/train_indices.json",
        "15f44b4a5ca1e8c2f2a7f2e1849d7ebe1d93e5020426d80408b5f21f0a3a6202",
    ),
    EtoTaskList(
        "webshop",
        "test",
        "webshop/test_indices.json",
        "0e7fa2b9646a8800761a29fe9bdfff757235bdec7597e3211525230434e2ea66",
    ),
    EtoTaskList(
        "webshop",
        "test500",
        "webshop/test_indices_500.json",
        "470de709d4e7beef58407e7dc725824b2a6a727f2d0ecf16bc20daa9deaa3587",
    ),
    EtoTaskList(
        "scienceworld",
        "train",
        "sciworld/train_indices.json",
        "c79eea7858383b829269986ee83d0d9a504533e7b4b3a5bc76e5bdc1e6999cd0",
    ),
    EtoTaskList(
        "scienceworld",
        "dev",
        "sciworld/dev_indices.json",
        "78084ef4393d2da87b21507451821e431daa1a70ab1a486fd1a964ab2404d741",
    ),
    EtoTaskList(
        "scienceworld",
        "test",
        "sciworld/test_indices.json",
        "dfe4ab263824f04a49cf977b8f6d65af516ce13b8cfbef5736a97ed993da7152",
    ),
)
ETO_SPLITS_SOURCE = "eto-splits"

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
            ETO_SPLITS_SOURCE,
            "ETO's WebShop and ScienceWorld task lists (then: eef data splits)",
            url_files=tuple(UrlFile(f"{_ETO_RAW}/{t.file}", t.file, t.sha256) for t in ETO_TASK_LISTS),
        ),
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

HubDownload = Callable[[str, Path], HubSnapshot]
DriveDownload = Callable[[str, Path], None]
UrlDownload = Callable[[UrlFile, Path], None]


def download_hub_dataset(repo_id: str, target: Path) -> HubSnapshot:
    """Every file of a Hugging Face dataset repository, at its current commit, into ``target``."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise EefError(
            "fetching from the Hugging Face hub needs huggingface_hub: pip install huggingface_hub"
        ) from None
    try:
        info = HfApi().dataset_info(repo_id)
        # The listing and the download name one commit, so a push in between cannot mix versions.
        snapshot_download(repo_id=repo_id, repo_type="dataset", revision=info.sha, local_dir=str(target))
    except Exception as e:  # network, authentication, a missing repository: the hub's own error types vary
        raise EefError(f"could not download the dataset {repo_id} from the Hugging Face hub: {e}") from e
    return HubSnapshot(str(info.sha), tuple(sorted(s.rfilename for s in info.siblings or ())))


def download_url(file: UrlFile, target: Path) -> None:
    """``file`` to ``target``, refused unless its sha256 is the pinned one (the file is text)."""
    try:
        with urllib.request.urlopen(file.url, timeout=60) as response:
            data = response.read()
    except (OSError, ValueError) as e:  # URLError is an OSError; a malformed address a ValueError
        raise EefError(f"could not download {file.url}: {e}") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise EefError(f"{file.url}: sha256 {digest} is not the pinned {file.sha256} (damaged, or changed upstream)")
    write_text_atomic(target, data.decode("utf-8"))


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
    url: UrlDownload = download_url,
) -> Path:
    """Download ``name`` into ``data_dir/name`` and write its manifest.

    Args:
        name: one of :data:`SOURCES`.
        data_dir: the data directory.
        force: download again even when an intact copy is there.
        hub: downloads a hub dataset (replaced in tests).
        drive: downloads a Google Drive file (replaced in tests).
        url: downloads a file from its address (replaced in tests).

    Returns:
        The directory holding the files.

    Raises:
        UnknownNameError: an unknown name.
        EefError: a download failed, its library is missing, or a file the hub repository lists
            did not arrive.
    """
    if name not in SOURCES:
        raise UnknownNameError("data set", name, sorted(SOURCES))
    source = SOURCES[name]
    target = Path(data_dir) / name
    if not force and (target / MANIFEST).is_file() and not verify(target):
        return target
    target.mkdir(parents=True, exist_ok=True)
    snapshot = _fetch_hub(source.hub_dataset, target, hub) if source.hub_dataset else None
    for file_id, filename in source.drive_files:
        drive(file_id, target / filename)
    for url_file in source.url_files:
        (target / url_file.file).parent.mkdir(parents=True, exist_ok=True)
        url(url_file, target / url_file.file)
    manifest = {
        "source": name,
        "hub_dataset": source.hub_dataset,
        "hub_revision": snapshot.revision if snapshot else None,
        "hub_files": list(snapshot.files) if snapshot else [],
        "drive_files": [{"id": i, "file": f} for i, f in source.drive_files],
        "url_files": [{"url": f.url, "file": f.file, "sha256": f.sha256} for f in source.url_files],
        "files": file_digests(target),
    }
    write_text_atomic(target / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return target


def _fetch_hub(repo_id: str, target: Path, hub: HubDownload) -> HubSnapshot:
    """Download a hub repository and check that every file it lists is there."""
    snapshot = hub(repo_id, target)
    missing = [f for f in snapshot.files if not (target / f).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise EefError(f"{repo_id} at {snapshot.revision}: listed but not downloaded: {shown}")
    return snapshot


def eto_split_files(directory: str | Path, env: str) -> dict[str, Path]:
    """eef split name -> ETO's task list for ``env`` in a fetched ``eto-splits`` directory.

    Raises:
        UnknownNameError: ETO has no task lists for ``env``.
        DataError: a list is missing.
    """
    files = {t.split: Path(directory) / t.file for t in ETO_TASK_LISTS if t.env == env}
    if not files:
        raise UnknownNameError("environment with ETO task lists", env, sorted({t.env for t in ETO_TASK_LISTS}))
    for path in files.values():
        if not path.is_file():
            raise DataError(path, f"missing (eef data fetch {ETO_SPLITS_SOURCE} downloads it)")
    return files
