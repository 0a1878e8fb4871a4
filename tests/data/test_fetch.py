import hashlib
import json

import pytest

from eef.data.fetch import (
    ETO_COMMIT,
    ETO_TASK_LISTS,
    MANIFEST,
    SOURCES,
    HubSnapshot,
    UrlFile,
    download_url,
    eto_split_files,
    fetch,
    verify,
)
from eef.errors import DataError, EefError, UnknownNameError


class FakeDownloads:
    """Stands in for huggingface_hub, gdown and GitHub: writes small files and records what was asked.

    ``hub_files`` are the repository's files (relative path -> text); ``listed_only`` are files the
    repository lists but the download leaves out."""

    def __init__(self, hub_files=None, listed_only=()):
        self.calls = []
        self.hub_files = hub_files or {"data/webshop_sft.json": '[{"id": 1, "conversations": []}]'}
        self.listed_only = tuple(listed_only)

    def hub(self, repo_id, target):
        self.calls.append(("hub", repo_id))
        for name, text in self.hub_files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_text(text)
        (target / ".cache").mkdir(exist_ok=True)
        (target / ".cache" / "lock").write_text("")
        return HubSnapshot("0123abc", tuple(sorted([*self.hub_files, *self.listed_only])))

    def drive(self, file_id, target):
        self.calls.append(("drive", file_id))
        target.write_text(f"contents of {file_id}")

    def url(self, file, target):
        self.calls.append(("url", file.url))
        target.write_text(f"[{len(self.calls)}]")


def _fetch(name, tmp_path, downloads, **kwargs):
    return fetch(name, tmp_path, hub=downloads.hub, drive=downloads.drive, url=downloads.url, **kwargs)


def test_hub_set_lands_in_its_directory_with_a_manifest(tmp_path):
    downloads = FakeDownloads()
    target = _fetch("eto", tmp_path, downloads)
    assert target == tmp_path / "eto" and downloads.calls == [("hub", "agent-eto/eto-sft-trajectory")]
    manifest = json.loads((target / MANIFEST).read_text())
    assert (
        list(manifest["files"]) == ["data/webshop_sft.json"]
        and len(manifest["files"]["data/webshop_sft.json"]["sha256"]) == 64
    )
    assert (manifest["hub_revision"], manifest["hub_files"]) == ("0123abc", ["data/webshop_sft.json"])
    assert verify(target) == []


def test_an_intact_copy_is_not_downloaded_again_and_a_damaged_one_is(tmp_path):
    downloads = FakeDownloads()
    target = _fetch("webshop-1k", tmp_path, downloads)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["MANIFEST.json", "items_shuffle_1000.json", "items_ins_v2_1000.json", "items_human_ins.json"]
    )
    _fetch("webshop-1k", tmp_path, downloads)
    assert len(downloads.calls) == 3
    (target / "items_ins_v2_1000.json").write_text("damaged")
    assert verify(target) == ["items_ins_v2_1000.json: sha256 differs from the manifest"]
    _fetch("webshop-1k", tmp_path, downloads)
    assert len(downloads.calls) == 6 and verify(target) == []
    _fetch("webshop-1k", tmp_path, downloads, force=True)
    assert len(downloads.calls) == 9


def test_unknown_names_and_missing_manifests(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown data set 'nope'"):
        fetch("nope", tmp_path)
    assert verify(tmp_path) == [f"{tmp_path / MANIFEST}: missing"]
    assert {"eef-expert", "eto", "agenttraj-l", "eto-splits", "webshop-1k", "webshop-full"} <= set(SOURCES)
    assert SOURCES["eef-expert"].hub_dataset == "lclan/webshop_expert_trajectories"


def test_a_damaged_manifest_means_fetch_again(tmp_path):
    downloads = FakeDownloads()
    target = _fetch("eto", tmp_path, downloads)
    (target / MANIFEST).write_text('{"files": ')
    assert "unreadable" in verify(target)[0]
    _fetch("eto", tmp_path, downloads)
    assert len(downloads.calls) == 2 and verify(target) == []


def test_a_failed_hub_download_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub

    from eef.data.fetch import download_hub_dataset

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", offline)
    with pytest.raises(EefError, match="lclan/webshop_expert_trajectories.*unreachable"):
        download_hub_dataset("lclan/webshop_expert_trajectories", tmp_path)


EEF_SET = {  # the EEF set's layout: WebShop dumps at the root, ScienceWorld runs in a folder with a space
    "webshop_gpt4_0613.json": "[]",
    "webshop_gpt35_turbo.json": "[]",
    "test trajs/NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json": "[]",
    "README.md": "# card",
}


def test_every_file_the_hub_repository_lists_is_fetched_and_recorded(tmp_path):
    downloads = FakeDownloads(EEF_SET)
    target = _fetch("eef-expert", tmp_path, downloads)
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["hub_files"] == sorted(EEF_SET) and sorted(manifest["files"]) == sorted(EEF_SET)
    assert (target / "test trajs" / "NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json").is_file()
    assert verify(target) == []


def test_a_listed_file_the_download_lacks_is_an_error_and_no_manifest_is_written(tmp_path):
    downloads = FakeDownloads(EEF_SET, listed_only=["test trajs/gpt-4_sciworld_1_-200.json"])
    with pytest.raises(
        EefError, match=r"at 0123abc: listed but not downloaded: test trajs/gpt-4_sciworld_1_-200\.json"
    ):
        _fetch("eef-expert", tmp_path, downloads)
    assert not (tmp_path / "eef-expert" / MANIFEST).exists()


def test_the_hub_download_lists_and_downloads_one_commit(tmp_path, monkeypatch):
    import huggingface_hub

    from eef.data.fetch import download_hub_dataset

    class Info:
        sha = "c0ffee"
        siblings = [type("Sibling", (), {"rfilename": name}) for name in ("b.json", "a dir/a.json")]

    asked = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, repo_id: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: asked.update(kwargs))
    snapshot = download_hub_dataset("lclan/webshop_expert_trajectories", tmp_path)
    assert snapshot == HubSnapshot("c0ffee", ("a dir/a.json", "b.json"))
    assert asked["revision"] == "c0ffee" and asked["repo_type"] == "dataset" and asked["local_dir"] == str(tmp_path)


def test_eto_task_lists_come_from_the_pinned_commit(tmp_path):
    downloads = FakeDownloads()
    target = _fetch("eto-splits", tmp_path, downloads)
    urls = [url for kind, url in downloads.calls if kind == "url"]
    assert len(urls) == 6 and all(f"/Yifan-Song793/ETO/{ETO_COMMIT}/eval_agent/data/" in u for u in urls)
    manifest = json.loads((target / MANIFEST).read_text())
    assert [f["file"] for f in manifest["url_files"]] == [t.file for t in ETO_TASK_LISTS]
    assert sorted(manifest["files"]) == sorted(t.file for t in ETO_TASK_LISTS)
    assert eto_split_files(target, "webshop") == {
        "train": target / "webshop/train_indices.json",
        "test": target / "webshop/test_indices.json",
        "test500": target / "webshop/test_indices_500.json",
    }
    assert list(eto_split_files(target, "scienceworld")) == ["train", "dev", "test"]


def test_eto_split_files_name_what_is_missing(tmp_path):
    with pytest.raises(DataError, match=r"webshop/train_indices\.json: missing \(eef data fetch eto-splits"):
        eto_split_files(tmp_path, "webshop")
    with pytest.raises(UnknownNameError, match="known: scienceworld, webshop"):
        eto_split_files(tmp_path, "alfworld")


def test_a_download_is_kept_only_with_the_pinned_sha256(tmp_path):
    published = tmp_path / "published.json"
    published.write_bytes(b"[2853, 5934,\n 1642]\n")
    pinned = hashlib.sha256(published.read_bytes()).hexdigest()
    target = tmp_path / "got" / "test_indices.json"
    target.parent.mkdir()
    download_url(UrlFile(published.as_uri(), "test_indices.json", pinned), target)
    assert target.read_bytes() == published.read_bytes()

    published.write_bytes(b"[1, 2]\n")  # changed upstream
    with pytest.raises(EefError, match=f"sha256 [0-9a-f]{{64}} is not the pinned {pinned}"):
        download_url(UrlFile(published.as_uri(), "test_indices.json", pinned), target)
    assert target.read_bytes() == b"[2853, 5934,\n 1642]\n"  # the good copy stays whole
    with pytest.raises(EefError, match="could not download file:"):
        download_url(UrlFile((tmp_path / "absent.json").as_uri(), "absent.json", pinned), target)
