"""The trajectory viewer in a real browser: headless Chromium driven through chromedriver (Selenium).

The page is opened from ``file://`` as a reader opens it. Without Chromium, chromedriver or Selenium
these tests are skipped, unless ``EEF_REQUIRE_BROWSER=1`` (set in CI), which makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

import eef.viewer
from eef.viewer import write_viewer
from test_viewer import EXPERT, LABELS, SCRIPT, add_eto_and_nat, task_outcomes, write_run

try:  # absent where only `make test`'s packages are installed: the tests skip (see missing_tools)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    webdriver = None

pytestmark = pytest.mark.browser

EXTRA_TASKS = 250  # three pages of the test list, in many chunks
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT_S = 10


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks."""
    found = {"chromium": chromium(), "chromedriver": shutil.which("chromedriver"), "selenium (pip)": webdriver}
    return [name for name, tool in found.items() if tool is None]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = missing_tools()
    if missing:
        why = f"the browser tests need {', '.join(missing)} (pip install selenium; Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("EEF_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    options = Options()
    options.binary_location = str(chromium())
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read after each test
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("viewer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(eef.viewer, "CHUNK_BYTES", 20_000)  # a task on a later page lives in another chunk
        run = write_run(root / "run", EXTRA_TASKS)
        add_eto_and_nat(run)
        return write_viewer(run, root / "viewer", LABELS).as_uri()


@pytest.fixture
def browser(driver: Any, page: str) -> Iterator[Any]:
    """The driver; after the test, the console must hold no error (a script error, a file not loaded)."""
    driver.get_log("browser")  # what earlier tests left
    yield driver
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors


def visit(browser: Any, page: str, where: str) -> None:
    """Load the page afresh at ``#where`` (state from an earlier visit is gone)."""
    browser.get("about:blank")
    browser.get(f"{page}#{where}")


def wait_for(browser: Any, css: str) -> list[Any]:
    return WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, css))


def listed(browser: Any) -> list[str]:
    return [row.text for row in wait_for(browser, "#list tbody tr td:first-child")]


def choose(browser: Any, filter_label: str, option: str) -> None:
    Select(browser.find_element(By.CSS_SELECTOR, f'select[aria-label="{filter_label}"]')).select_by_visible_text(option)


def test_the_page_loads_and_pages_through_the_test_tasks(browser: Any, page: str) -> None:
    visit(browser, page, "test")
    tasks = list(task_outcomes(EXTRA_TASKS))
    assert listed(browser) == tasks[:100]
    assert browser.find_element(By.CSS_SELECTOR, ".count").text == f"{len(tasks)} of {len(tasks)} test tasks"
    assert browser.title == "Trajectories of run fixture"
    for _ in range(2):
        browser.find_element(By.CSS_SELECTOR, "button.next").click()
    assert listed(browser) == tasks[200:]
    assert browser.find_element(By.CSS_SELECTOR, ".page").text == "page 3 of 3"
    browser.find_element(By.LINK_TEXT, tasks[-1]).click()  # its details are in a chunk not loaded yet
    sides = wait_for(browser, ".side h3")
    assert [side.text for side in sides] == ["SFT-POS", "RFT 1", "EEF 1"]


def test_filters_narrow_the_list_to_the_tasks_that_match(browser: Any, page: str) -> None:
    visit(browser, page, "test")
    listed(browser)
    choose(browser, "EEF 1", "won")
    choose(browser, "RFT 1", "lost")
    won_by_eef_only = [task for task, (_, rft, eef) in task_outcomes(EXTRA_TASKS).items() if eef and not rft]
    assert "a" in won_by_eef_only and len(won_by_eef_only) < 100
    assert listed(browser) == won_by_eef_only
    browser.find_element(By.CSS_SELECTOR, "input[type=search]").send_keys("x00")
    assert listed(browser) == [task for task in won_by_eef_only if "x00" in task]


def test_a_training_task_shows_eef_labels_and_each_turns_mask(browser: Any, page: str) -> None:
    visit(browser, page, "train")
    listed(browser)  # the list is drawn by the page's script once its index has loaded: wait for it
    browser.find_element(By.LINK_TEXT, "t1").click()
    wait_for(browser, ".trajectory")
    turns = browser.execute_script(
        "return [...document.querySelectorAll('.trajectory')].map(t => [...t.querySelectorAll('.turn')]"
        ".map(turn => turn.className))"
    )
    expert, rollouts, solutions = turns[0], turns[1:5], turns[5:]
    segments = ["seg-beneficial"] * 2 + ["seg-harmful"] * 2 + ["seg-beneficial"] * 2
    assert expert == [f"turn {s}" for s in segments] + ["turn"] * 2
    assert [len(r) for r in rollouts] == [2, 4, 6, 8]
    recovery = browser.find_element(By.CSS_SELECTOR, ".state.recovery").text
    assert recovery.startswith("s4:") and "recovery state" in recovery
    restored = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".state.restored")]
    assert restored[:3] == [f"restored s{k} of {EXPERT}: the agent acts from here" for k in (2, 4, 6)]
    # the solution from recovery state s4: the expert before it (harmful A1 included) is context only
    from_s4 = solutions[1]
    assert ["masked" in c for c in from_s4] == [True] * 4 + [False] * 4
    assert ["trainable" in c for c in from_s4] == [False] * 4 + [True] * 4
    assert all("seg-harmful" in c for c in from_s4[2:4])
    badges = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".badge.masked")]
    assert badges == ["context only"] * 4

    Select(browser.find_element(By.ID, "stage")).select_by_visible_text(
        "RFT 1"
    )  # RFT: no labels, its own success trained whole
    assert not browser.find_elements(By.CSS_SELECTOR, ".turn[class*=seg-]")
    solution = browser.find_elements(By.CSS_SELECTOR, ".trajectory")[-1]
    assert [t.get_attribute("class") for t in solution.find_elements(By.CSS_SELECTOR, ".turn")] == [
        "turn trainable"
    ] * 2


def test_an_injected_script_is_shown_as_text(browser: Any, page: str) -> None:
    visit(browser, page, "test/a")
    observations = [e.text for e in wait_for(browser, ".side pre.obs")]
    assert f"{SCRIPT} after search[x]" in observations
    assert browser.execute_script("return window.injected") is None
    assert browser.find_elements(By.CSS_SELECTOR, "#app script") == []


def test_etos_pairs_and_nats_marked_failures_are_drawn(browser: Any, page: str) -> None:
    visit(browser, page, "train")
    listed(browser)
    browser.find_element(By.LINK_TEXT, "t2").click()
    wait_for(browser, ".trajectory")
    Select(browser.find_element(By.ID, "stage")).select_by_visible_text("ETO 1")
    pair = browser.find_element(By.CSS_SELECTOR, ".meta.pair")
    assert pair.text == "pair 1: gpt-4's trajectory preferred to self's"
    sides = pair.find_element(By.XPATH, "following-sibling::div[1]").find_elements(By.CSS_SELECTOR, ".side h4")
    assert [side.text for side in sides] == ["chosen", "rejected"]
    visit(browser, page, "train")
    listed(browser)
    browser.find_element(By.LINK_TEXT, "t1").click()
    wait_for(browser, ".trajectory")
    Select(browser.find_element(By.ID, "stage")).select_by_visible_text("NAT 1")
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h3")]
    assert "Failed trajectories trained on, under a prompt that marks them failed (1)" in headings
