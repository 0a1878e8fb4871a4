"""Bad input along the path from data to run (docs/data.md, "From data to run"): a data directory
with a missing or partial file, a JSON file cut in the middle, a product without a field the reward
reads, goals naming products not in the catalog. Each is one line naming the file and the field
(or a count of what was skipped and why), and an existing import or checked copy is never
overwritten by a failed one."""

import json

import pytest
from expert_files import eef_expert_record
from typer.testing import CliRunner
from webshop_teachers import teacher_episode

from eef.cli import app
from eef.data.importers import import_file
from eef.envs import make
from eef.envs.shop.webshop_data import load_webshop
from eef.errors import DataError
from eef.trajectory_files import write_trajectories

runner = CliRunner()

PRODUCT = {
    "asin": "B000000001",
    "lucene_docno": 0,
    "Title": "red cotton shirt",
    "Description": "soft",
    "BulletPoints": ["cotton"],
    "pricing": [5.0],
    "options": {"color": ["red", "blue"]},
    "Attributes": ["cotton"],
    "query": "shirts",
    "category": "fashion",
    "product_category": "clothing › shirts",
}
INSTRUCTIONS = {
    "B000000001": {"attributes": ["cotton"], "instruction": "a shirt", "instruction_attributes": ["cotton"]}
}
RAW = {
    "asin": "B000000001",
    "name": "Red Shirt",
    "full_description": "soft",
    "small_description": ["a"],
    "pricing": "$10.00",
    "customization_options": "",
    "query": "shirts",
    "category": "fashion",
    "product_category": "a › b",
}


def _processed(directory, products, instructions=INSTRUCTIONS, human=None):
    directory.mkdir(exist_ok=True)
    (directory / "products.jsonl").write_text("".join(json.dumps(p) + "\n" for p in products))
    (directory / "items_ins_v2.json").write_text(json.dumps(instructions))
    if human is not None:
        (directory / "items_human_ins.json").write_text(json.dumps(human))
    return directory


def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_split_file_that_lists_a_task_twice_keeps_it_once(tmp_path, webshop_1k_dir):
    # ETO's WebShop train list holds index 4116 twice; given directly as a split file it is one task
    (tmp_path / "train.json").write_text("[5, 3, 5, 1, 3]")
    catalog = load_webshop(webshop_1k_dir, split_files={"train": str(tmp_path / "train.json")})
    assert catalog.task_ids("train") == ["webshop_5", "webshop_3", "webshop_1"]
    (tmp_path / "train.json").write_text("[5, true]")
    with pytest.raises(DataError, match=r"train.json: field '\[1\]': goal index must be an integer"):
        load_webshop(webshop_1k_dir, split_files={"train": str(tmp_path / "train.json")})


@pytest.mark.parametrize("name", ["items_ins_v2.json", "items_human_ins.json"])
def test_an_instruction_file_cut_in_the_middle_is_named(tmp_path, name):
    human = {"B000000001": [{"instruction": "a red shirt", "instruction_attributes": ["cotton"]}]}
    data = _processed(tmp_path, [PRODUCT], human=human)
    text = (data / name).read_text()
    (data / name).write_text(text[: len(text) // 2])
    with pytest.raises(DataError) as error:
        load_webshop(data, goals="human" if "human" in name else "synthetic", nouns="heuristic")
    assert _one_line(error).startswith(f"{data / name}:1: invalid JSON")
    assert "as if cut short" in str(error.value)


def test_human_goals_without_their_file_name_it(tmp_path):
    (tmp_path / "items_shuffle_1000.json").write_text(json.dumps([RAW]))
    (tmp_path / "items_ins_v2_1000.json").write_text(json.dumps(INSTRUCTIONS))
    with pytest.raises(DataError) as error:
        load_webshop(tmp_path, goals="human", nouns="heuristic")
    assert _one_line(error) == f"{tmp_path / 'items_human_ins.json'}: missing: human goals need items_human_ins.json"


@pytest.mark.parametrize(
    "field", ["Title", "Attributes", "options", "pricing", "query", "category", "product_category", "BulletPoints"]
)
def test_a_processed_product_without_a_field_the_reward_or_page_reads_is_named(tmp_path, field):
    second = {**PRODUCT, "asin": "B000000002", "lucene_docno": 1}
    del second[field]
    data = _processed(tmp_path, [PRODUCT, second])
    with pytest.raises(DataError) as error:
        load_webshop(data, nouns="heuristic")
    assert _one_line(error) == f"{data / 'products.jsonl'}:2: field '{field}': missing"


@pytest.mark.parametrize("field", ["name", "full_description", "query", "category", "product_category"])
def test_an_original_product_without_a_field_the_reward_or_page_reads_is_named(tmp_path, field):
    product = dict(RAW)
    del product[field]
    (tmp_path / "items_shuffle_1000.json").write_text(json.dumps([RAW | {"asin": "B000000000"}, product]))
    (tmp_path / "items_ins_v2_1000.json").write_text(json.dumps(INSTRUCTIONS))
    with pytest.raises(DataError) as error:
        load_webshop(tmp_path, nouns="heuristic")
    assert _one_line(error) == f"{tmp_path / 'items_shuffle_1000.json'}: field '[1].{field}': missing"


def test_instructions_naming_products_not_in_the_catalog_are_counted(tmp_path):
    human = {
        "B000000001": [{"instruction": "a red shirt.", "instruction_attributes": ["cotton"]}],
        "B0NOTTHERE": [{"instruction": "x", "instruction_attributes": ["y"]}] * 2,
    }
    instructions = {
        **INSTRUCTIONS,
        "B0ABSENT00": {"attributes": [], "instruction": "x", "instruction_attributes": ["y"]},
    }
    data = _processed(tmp_path, [PRODUCT], instructions, human)
    human_catalog = load_webshop(data, goals="human", nouns="heuristic")
    assert [g.asin for g in human_catalog.goals] == ["B000000001"]
    assert human_catalog.info["skipped_human_instructions"] == {"names a product not in the catalog": 2}
    synthetic = load_webshop(data, nouns="heuristic")
    assert {g.asin for g in synthetic.goals} == {"B000000001"} and len(synthetic.goals) == 2
    assert synthetic.info["skipped_synthetic_instructions"] == {"names a product not in the catalog": 1}
    clean = load_webshop(_processed(tmp_path / "clean", [PRODUCT]), nouns="heuristic")
    assert clean.info["skipped_synthetic_instructions"] == {}
    # `eef data check` says so before its figures
    options = ["-o", f"data_dir={data}", "-o", "goals=human", "-o", "nouns=heuristic"]
    env = make("webshop", data_dir=str(data), goals="human", nouns="heuristic")
    task = next(t for split in env.splits() for t in env.task_ids(split))
    write_trajectories(tmp_path / "expert.jsonl", [teacher_episode(env, task, "gpt-4", 0.0)])
    result = runner.invoke(app, ["data", "check", str(tmp_path / "expert.jsonl"), "--env", "webshop", *options])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "webshop: 2 human instructions skipped (names a product not in the catalog)"
    assert lines[1].startswith("checked 1 trajectories: 1 replay faithfully")


def test_goals_that_all_name_absent_products_are_an_error(tmp_path):
    human = {"B0NOTTHERE": [{"instruction": "x", "instruction_attributes": ["y"]}] * 3}
    data = _processed(tmp_path, [PRODUCT], human=human)
    with pytest.raises(DataError) as error:
        load_webshop(data, goals="human", nouns="heuristic")
    assert _one_line(error) == (
        f"{data / 'items_human_ins.json'}: no human goals for the products of products.jsonl; "
        "3 skipped: names a product not in the catalog"
    )
    (data / "items_ins_v2.json").write_text(json.dumps({"B000000001": {"attributes": ["cotton"]}}))
    with pytest.raises(DataError, match=r"items_ins_v2.json: no synthetic goals"):
        load_webshop(data, nouns="heuristic")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, webshop_env):
    """An expert file in the EEF authors' format with four WebShop episodes."""
    runs = [teacher_episode(webshop_env, t, "gpt-4-0613", 0.4) for t in webshop_env.task_ids("train")[:4]]
    path = tmp_path_factory.mktemp("teacher") / "webshop_gpt4_0613.json"
    path.write_text(json.dumps([eef_expert_record(r) for r in runs], indent=1))
    return path


def test_an_expert_file_cut_in_the_middle_names_the_element(tmp_path, teacher_file, webshop_env):
    text = teacher_file.read_text()
    cut = tmp_path / "webshop_gpt4_0613.json"
    cut.write_text(text[: text.index('"conversations"', text.index('"id"', len(text) // 2)) + 30])
    with pytest.raises(DataError) as error:
        import_file(cut, "eef-expert", webshop_env)
    message = _one_line(error)
    assert message.startswith(f"{cut}:") and "not valid JSON (element [" in message
    assert message.endswith("the file ends inside it, as if cut short")
    cut.write_text(text[: text.index("},\n {", len(text) // 2) + 2])  # cut between two records
    with pytest.raises(DataError, match=r"the array is not closed; the file ends, as if cut short"):
        import_file(cut, "eef-expert", webshop_env)


def test_a_failed_import_or_check_leaves_the_earlier_output_whole(tmp_path, teacher_file, webshop_1k_dir):
    option = ["-o", f"data_dir={webshop_1k_dir}"]
    out = tmp_path / "experts" / "gpt-4.jsonl"
    command = ["data", "import", "--format", "eef-expert", "--env", "webshop", "--out", str(out), *option]
    assert runner.invoke(app, [*command[:2], str(teacher_file), *command[2:]]).exit_code == 0
    checked = tmp_path / "experts" / "gpt-4.checked.jsonl"
    assert runner.invoke(app, ["data", "check", str(out), "--env", "webshop", *option]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}

    text = teacher_file.read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    result = runner.invoke(app, [*command[:2], str(cut), *command[2:], "--force"])
    assert result.exit_code != 0 and "as if cut short" in str(result.exception)

    torn = tmp_path / "torn.jsonl"
    lines = out.read_text().splitlines(keepends=True)
    torn.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    result = runner.invoke(
        app, ["data", "check", str(torn), "--env", "webshop", "--out", str(checked), "--force", *option]
    )
    assert (
        result.exit_code != 0 and f"{torn}:3:" in str(result.exception) and "as if cut short" in str(result.exception)
    )
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # nothing replaced, nothing left behind
