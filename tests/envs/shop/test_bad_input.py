"""Missing or malformed WebShop files: errors name the file, line and field."""

import gzip
import json

import pytest

from eef.envs.shop.webshop_data import load_webshop
from eef.errors import DataError, UnknownNameError

GOOD = {
    "asin": "B000000001",
    "lucene_docno": 0,
    "Title": "t",
    "Description": "",
    "BulletPoints": [],
    "pricing": [5.0],
    "options": {},
    "Attributes": [],
    "query": "q",
    "category": "c",
    "product_category": "",
}


def _write(tmp_path, lines, ins=None):
    (tmp_path / "products.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "items_ins_v2.json").write_text(json.dumps(ins if ins is not None else {}))
    return tmp_path


def test_bad_json_line_is_named(tmp_path):
    _write(tmp_path, [json.dumps(GOOD), json.dumps({**GOOD, "asin": "B2", "lucene_docno": 1}), "{not json"])
    with pytest.raises(DataError, match=r"products.jsonl:3: not valid JSON"):
        load_webshop(tmp_path)


def test_missing_and_mistyped_fields_are_named(tmp_path):
    record = dict(GOOD)
    del record["Title"]
    _write(tmp_path, [json.dumps(record)])
    with pytest.raises(DataError, match=r"products.jsonl:1: field 'Title': missing"):
        load_webshop(tmp_path)
    _write(tmp_path, [json.dumps({**GOOD, "pricing": "$5"})])
    with pytest.raises(DataError, match=r"products.jsonl:1: field 'pricing': expected list, got str"):
        load_webshop(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"items_ins_v2.json: missing"):
        load_webshop(tmp_path)
    (tmp_path / "items_ins_v2.json").write_text("{}")
    with pytest.raises(DataError, match=r"products.jsonl.gz: missing"):
        load_webshop(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_webshop(tmp_path / "nowhere")


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress((json.dumps(GOOD) + "\n").encode())
    (tmp_path / "products.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "items_ins_v2.json").write_text("{}")
    with pytest.raises(DataError, match=r"products.jsonl.gz: cannot read"):
        load_webshop(tmp_path)


def test_original_layout_is_read_and_its_errors_name_the_record(tmp_path):
    raw = [
        {
            "asin": "B000000001",
            "name": "Red Shirt",
            "full_description": "soft",
            "small_description": ["a"],
            "pricing": "$10.00 - $12.50",
            "customization_options": {"Color": [{"value": "Navy/Blue"}]},
            "query": " Shirts ",
            "category": "fashion",
            "product_category": "a › b",
            "images": ["x"],
        }
    ]
    (tmp_path / "items_shuffle_1000.json").write_text(json.dumps(raw))
    ins = {"B000000001": {"attributes": ["soft"], "instruction": "i want a shirt", "instruction_attributes": ["soft"]}}
    (tmp_path / "items_ins_v2_1000.json").write_text(json.dumps(ins))
    catalog = load_webshop(tmp_path, nouns="heuristic")
    product = catalog.products[0]
    assert product.options == {"color": ["navy | blue"]}
    assert product.price_text == "$10.0 to $12.5" and 10.0 <= product.price <= 12.5
    assert product.query == "shirts"
    assert catalog.goals[0].instruction.startswith("i want a shirt with color: navy | blue, and price lower than")
    raw[0]["name"] = 7
    (tmp_path / "items_shuffle_1000.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"items_shuffle_1000.json: field '\[0\].name': expected str"):
        load_webshop(tmp_path)


def test_split_files_and_their_errors(tmp_path, webshop_1k_dir):
    (tmp_path / "test.json").write_text("[5, 3, 1]")
    catalog = load_webshop(webshop_1k_dir, split_files={"test": str(tmp_path / "test.json")})
    assert catalog.task_ids("test") == ["webshop_5", "webshop_3", "webshop_1"]
    with pytest.raises(UnknownNameError, match="unknown split 'train'; known: test"):
        catalog.task_ids("train")
    with pytest.raises(UnknownNameError, match="unknown task id 'webshop_7000'"):
        catalog.goal_index("webshop_7000")
    (tmp_path / "test.json").write_text("[5, 99999]")
    with pytest.raises(DataError, match=r"test.json: field '\[1\]': goal index must be an integer in 0..6909"):
        load_webshop(webshop_1k_dir, split_files={"test": str(tmp_path / "test.json")})
