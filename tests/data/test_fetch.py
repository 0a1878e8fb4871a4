import json

import pytest

from eef.data.fetch import MANIFEST, SOURCES, fetch, verify
from eef.errors import UnknownNameError


class FakeDownloads:
    """Stands in for huggingface_hub and gdown: writes small files and records what was asked."""

    def __init__(self):
        self.calls = []

    def hub(self, repo_id, target):
        self.calls.append(("hub", repo_id))
        (target / "data").mkdir(parents=True, exist_ok=True)
        (target / "data" / "webshop_sft.json").write_text('[{"id": 1, "conversations": []}]')
        (target / ".cache").mkdir(exist_ok=True)
        (target / ".cache" / "lock").write_text("")

    def drive(self, file_id, target):
        self.calls.append(("drive", file_id))
        target.write_text(f"contents of {file_id}")


def test_hub_set_lands_in_its_directory_with_a_manifest(tmp_path):
    downloads = FakeDownloads()
    target = fetch("eto", tmp_path, hub=downloads.hub, drive=downloads.drive)
    assert target == tmp_path / "eto" and downloads.calls == [("hub", "agent-eto/eto-sft-trajectory")]
    manifest = json.loads((target / MANIFEST).read_text())
    assert (
        list(manifest["files"]) == ["data/webshop_sft.json"]
        and len(manifest["files"]["data/webshop_sft.json"]["sha256"]) == 64
    )
    assert verify(target) == []


def test_an_intact_copy_is_not_downloaded_again_and_a_damaged_one_is(tmp_path):
    downloads = FakeDownloads()
    target = fetch("webshop-1k", tmp_path, hub=downloads.hub, drive=downloads.drive)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["MANIFEST.json", "items_shuffle_1000.json", "items_ins_v2_1000.json", "items_human_ins.json"]
    )
    fetch("webshop-1k", tmp_path, hub=downloads.hub, drive=downloads.drive)
    assert len(downloads.calls) == 3
    (target / "items_ins_v2_1000.json").write_text("damaged")
    assert verify(target) == ["items_ins_v2_1000.json: sha256 differs from the manifest"]
    fetch("webshop-1k", tmp_path, hub=downloads.hub, drive=downloads.drive)
    assert len(downloads.calls) == 6 and verify(target) == []
    fetch("webshop-1k", tmp_path, force=True, hub=downloads.hub, drive=downloads.drive)
    assert len(downloads.calls) == 9


def test_unknown_names_and_missing_manifests(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown data set 'nope'"):
        fetch("nope", tmp_path)
    assert verify(tmp_path) == [f"{tmp_path / MANIFEST}: missing"]
    assert {"eef-expert", "eto", "agenttraj-l", "webshop-1k", "webshop-full"} <= set(SOURCES)
    assert SOURCES["eef-expert"].hub_dataset == "lclan/webshop_expert_trajectories"


def test_a_damaged_manifest_means_fetch_again(tmp_path):
    downloads = FakeDownloads()
    target = fetch("eto", tmp_path, hub=downloads.hub, drive=downloads.drive)
    (target / MANIFEST).write_text('{"files": ')
    assert "unreadable" in verify(target)[0]
    fetch("eto", tmp_path, hub=downloads.hub, drive=downloads.drive)
    assert len(downloads.calls) == 2 and verify(target) == []


def test_a_failed_hub_download_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub

    from eef.data.fetch import download_hub_dataset
    from eef.errors import EefError

    def offline(**kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(EefError, match="lclan/webshop_expert_trajectories.*unreachable"):
        download_hub_dataset("lclan/webshop_expert_trajectories", tmp_path)
