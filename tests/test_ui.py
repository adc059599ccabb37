"""The Dagster UI as a user drives it: headless Chromium (Playwright) against `dagster dev` on a fresh instance.

The asset graph is read from the rendered SVG (nodes, their group boxes, the edges' end points) and compared with
the code location's own graph; everything is launched by clicking, and what the runs built is checked in PostgreSQL.
Screenshots of what the user saw go to `artifacts/ui/` (git-ignored).
"""

from __future__ import annotations

import email.utils
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest
from dagster import AssetKey
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from imdb_assets.catalog import DATASETS, SCHEMA
from imdb_assets.definitions import defs
from imdb_assets.defs.files.keys import parsed_key, raw_key
from tests.conftest import BASICS, RATINGS
from tests.dagster_dev import REPO, DagsterDev, fresh_home, platform_env
from tests.imdb_files import write_files
from tests.mirror_server import MirrorServer
from tests.world import WORLD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = REPO / "artifacts" / "ui"
# The layers, left to right, as the graph must show them.
LAYERS = ["raw_files", "parsed_frames", "imdb_tables", "staging", "intermediate", "marts"]
GRAPH = defs.resolve_asset_graph()
# The page is first large enough to draw every node of the expanded graph in full, then of a common screen's size.
WHOLE_GRAPH = {"width": 3600, "height": 16000}
SCREEN = {"width": 1600, "height": 1000}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: install Debian's `chromium` package (.ci/run does)"
)

RUN_LOGS = """query ($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { ... on MessageEvent { message } } } }
}"""
CHECK_EXECUTIONS = """query ($assetKey: AssetKeyInput!, $checkName: String!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: 1) { runId status }
}"""

# Boxes of the rendered graph, in SVG coordinates: asset nodes (with the text of their card, kinds included),
# group outlines (with their header's name) and edges (first and last point of each path).
READ_GRAPH = """() => {
  const box = (el) => {
    const fo = el.closest("foreignObject");
    return {x: +fo.getAttribute("x"), y: +fo.getAttribute("y"), w: +fo.getAttribute("width"),
            h: +fo.getAttribute("height")};
  };
  const nodes = Array.from(document.querySelectorAll('foreignObject [class*="AssetNode_assetName"]')).map(
    (el) => ({name: el.textContent, text: el.closest("foreignObject").firstElementChild.innerText, ...box(el)}));
  const groups = Array.from(document.querySelectorAll('foreignObject [class*="ExpandedGroupNode_groupNodeHeader"]'))
    .map((el) => ({name: el.textContent, ...box(el)}));
  const edges = Array.from(document.querySelectorAll("path[marker-end][stroke]")).map((path) => {
    const numbers = path.getAttribute("d").match(/-?[\\d.]+/g).map(Number);
    return {x1: numbers[0], y1: numbers[1], x2: numbers[numbers.length - 2], y2: numbers[numbers.length - 1]};
  });
  return {nodes, groups, edges};
}"""
GRAPH_DRAWN = f"""([nodes, edges]) => {{
  const graph = ({READ_GRAPH})();
  return graph.nodes.length === nodes && graph.edges.length === edges;
}}"""


def expected_graph() -> tuple[dict[tuple[str, str], set[str]], set[tuple[tuple[str, str], tuple[str, str]]]]:
    """The code location's graph as the UI labels it: each (group, name) with its kinds, and the edges."""
    nodes, edges = {}, set()
    for key in GRAPH.get_all_asset_keys():
        node = GRAPH.get(key)
        nodes[(node.group_name, key.path[-1])] = node.kinds
        for parent in node.parent_keys:
            edges.add(((GRAPH.get(parent).group_name, parent.path[-1]), (node.group_name, key.path[-1])))
    return nodes, edges


def shown_description(page, key: AssetKey) -> None:
    """Wait until the asset page shows the start of the asset's description: its first sentence (dagster-dbt
    appends the model's SQL to the dbt docs' text)."""
    first_sentence = GRAPH.get(key).description.splitlines()[0].split(". ")[0]
    page.get_by_text(first_sentence).filter(visible=True).first.wait_for()


def _inside(inner: dict, outer: dict) -> bool:
    return outer["x"] <= inner["x"] <= inner["x"] + inner["w"] <= outer["x"] + outer["w"] and (
        outer["y"] <= inner["y"] <= outer["y"] + outer["h"]
    )


def rendered_graph(graph: dict) -> tuple[list[dict], set[tuple[tuple[str, str], tuple[str, str]]]]:
    """Each node with its group (the outline it lies in), and each edge as the pair of nodes it joins: it leaves
    a node's right side and ends, arrow head included, at the next node's left side."""

    def group_of(node: dict) -> str:
        (group,) = [
            g["name"]
            for g in graph["groups"]
            if g["x"] <= node["x"]
            and node["x"] + node["w"] <= g["x"] + g["w"]
            and g["y"] <= node["y"] <= g["y"] + g["h"]
        ]
        return group

    nodes = [node | {"group": group_of(node)} for node in graph["nodes"]]

    def node_at(x: float, y: float, side: str) -> tuple[str, str]:
        (node,) = [
            n
            for n in nodes
            if n["y"] <= y <= n["y"] + n["h"] and abs((n["x"] + n["w"] if side == "right" else n["x"]) - x) <= 10
        ]
        return node["group"], node["name"]

    edges = {(node_at(e["x1"], e["y1"], "right"), node_at(e["x2"], e["y2"], "left")) for e in graph["edges"]}
    return nodes, edges


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Without the background-networking flags Chromium keeps dialling Google, which this network refuses.
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


class User:
    """A person in front of the UI: opens pages, clicks what they would click, looks at what is shown."""

    def __init__(self, page, dev: DagsterDev) -> None:
        self.page = page
        self.dev = dev
        page.set_default_timeout(120_000)  # a busy 2-core machine renders slowly
        # Dagster's newsletter prompt shows on a fresh instance whenever it loads, over whatever the user does next.
        page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True), lambda skip: skip.click())

    def open(self, path: str) -> None:
        self.page.goto(self.dev.url + path)

    def expand_all_groups(self, attempts: int = 10) -> None:
        """Right-click the asset graph's background and pick "Expand all groups". The canvas offers the menu only
        once the code location has loaded and the graph is drawn, which on a busy machine can take minutes."""
        menu_item = self.page.get_by_role("menuitem", name=re.compile("Expand all groups"))
        corner = {"x": WHOLE_GRAPH["width"] - 200, "y": WHOLE_GRAPH["height"] - 200}  # no node there
        self.page.locator("svg foreignObject").first.wait_for()
        for _ in range(attempts):
            self.page.locator("body").click(button="right", position=corner)
            try:
                # Dismissing the prompt (the handler, before any action) also closes the menu: then ask again.
                menu_item.click(timeout=30_000)
                return
            except PlaywrightTimeout:
                self.page.keyboard.press("Escape")
        self.screenshot("asset-graph-no-menu")
        pytest.fail(f"no context menu on the asset graph after {attempts} right-clicks")

    def button(self, label: str):
        return self.page.get_by_role("button").filter(has_text=re.compile(f"^{re.escape(label)}$"))

    def launch(self, label: str) -> str:
        """Click a launch button; the run id from the "Launched run" toast's link."""
        self.button(label).first.click()
        link = self.page.locator("[data-sonner-toast] a[href*='/runs/']").first
        link.wait_for()
        return link.get_attribute("href").rsplit("/", 1)[1]

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def user(browser, db_url: str, tmp_path: Path) -> Iterator[tuple[User, MirrorServer, Path]]:
    mirror_dir = write_files(tmp_path / "mirror", WORLD)
    mirror = MirrorServer(mirror_dir)
    env = platform_env(
        fresh_home(tmp_path, "dagster_ui_end_to_end"),
        DATABASE_URL=db_url,
        IMDB_BASE_URL=mirror.base_url,
        IMDB_DATA_DIR=str(tmp_path / "data"),
    )
    dev = DagsterDev(env, tmp_path)
    # Half the device pixels of a common screen: a quarter of the pixels for Chromium's software renderer to paint.
    page = browser.new_page(viewport=WHOLE_GRAPH, device_scale_factor=0.5)
    try:
        dev.wait_for("the webserver", lambda: dev.graphql("{ version }"), timeout=300)
        yield User(page, dev), mirror, tmp_path / "data"
    finally:
        page.close()
        dev.stop()
        mirror.stop()


def rows(db_url: str, statement: str, *params) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(statement, params).fetchall()


@pytest.mark.timeout(1800)
def test_a_user_browses_lineage_materializes_and_recovers_a_failed_run_in_the_ui(user, db_url):
    user, mirror, data_dir = user
    dev, page = user.dev, user.page

    # The asset graph, every group expanded: five layers left to right, each node where the code puts it.
    user.open("/asset-groups")
    user.expand_all_groups()
    expected_nodes, expected_edges = expected_graph()
    # The groups expand with an animation: read the graph once every node and edge of the code is drawn.
    try:
        page.wait_for_function(GRAPH_DRAWN, arg=[len(expected_nodes), len(expected_edges)])
    except PlaywrightTimeout:
        user.screenshot("asset-graph-incomplete")
        drawn = page.evaluate(READ_GRAPH)
        pytest.fail(
            f"the graph drew {len(drawn['nodes'])} of {len(expected_nodes)} nodes and {len(drawn['edges'])} of "
            f"{len(expected_edges)} edges; groups {sorted(g['name'] for g in drawn['groups'])}"
        )
    graph = page.evaluate(READ_GRAPH)
    user.screenshot("asset-graph")
    nodes, edges = rendered_graph(graph)
    # Left to right as data flows; the intermediate group and the marts overlap (a mart reads an intermediate table
    # that reads staging, beside marts that read staging directly), so those two are in either order.
    columns = [g["name"] for g in sorted(graph["groups"], key=lambda g: g["x"])]
    assert columns[:4] == LAYERS[:4] and set(columns[4:]) == set(LAYERS[4:])
    assert sorted((n["group"], n["name"]) for n in nodes) == sorted(expected_nodes)
    assert edges == expected_edges
    for node in nodes:  # the kinds' tags under each card: File, Polars, Parquet, Postgres, dbt
        assert expected_nodes[(node["group"], node["name"])] <= set(node["text"].lower().split()), node
    # The rest fits a common screen; a smaller page is also much less for the software renderer to paint.
    page.set_viewport_size(SCREEN)

    # "Materialize all": one run builds every layer; the tables and marts hold the constructed IMDb.
    everything = user.launch("Materialize all")
    run = dev.wait_for_run(everything, timeout=900)
    assert {AssetKey(k["path"]) for k in run["assetSelection"]} == set(GRAPH.get_all_asset_keys())
    user.open(f"/runs/{everything}")
    page.get_by_text("Success", exact=True).first.wait_for()
    user.screenshot("run")
    for dataset in DATASETS:
        count = rows(db_url, f"SELECT count(*) FROM {SCHEMA}.{dataset.table}")
        assert count == [(len(WORLD[dataset.file_stem]),)], dataset.table
    assert rows(db_url, "SELECT count(*) FROM imdb_marts.titles") == [(len(WORLD["title.basics"]),)]
    assert rows(db_url, "SELECT count(*) FROM imdb_marts.series_episodes") == [(4,)]
    assert rows(
        db_url,
        "SELECT recommended_tconst FROM imdb_marts.title_recommendations WHERE tconst = 'tt0000001' AND rank = 1",
    ) == [("tt0000002",)]

    # An asset's page: row count, the first rows, where the file came from, and numbers plotted over time.
    user.open("/assets/imdb/title_basics")
    metadata = page.get_by_text("Metadata", exact=True).first
    metadata.wait_for()
    body = page.locator("body")
    shown_description(page, AssetKey(["imdb", "title_basics"]))  # the catalog's
    for shown in ["Row count", "rows_per_s", "table_size", "rejects_path", "preview", "Twin Hearts II", "The Show"]:
        assert body.get_by_text(shown, exact=True).first.is_visible(), shown
    assert body.get_by_text(f"{mirror.base_url}title.basics.tsv.gz").first.is_visible()
    sent = email.utils.formatdate((mirror.root / BASICS.file_name).stat().st_mtime, usegmt=True)
    assert body.get_by_text(sent, exact=True).first.is_visible()  # the Last-Modified the mirror answered with
    user.screenshot("asset-title_basics")
    page.get_by_text("Plots", exact=True).first.click()
    for plotted in ["dagster/row_count", "rows_per_s", "seconds", "table_bytes", "rejects"]:
        page.get_by_text(plotted, exact=True).first.wait_for()
    user.screenshot("asset-title_basics-plots")

    user.open("/assets/imdb_marts/titles")
    page.get_by_text("Twin Hearts II", exact=True).first.wait_for()
    assert body.get_by_text("table_size", exact=True).first.is_visible()
    shown_description(page, AssetKey(["imdb_marts", "titles"]))  # from dbt's docs

    # No metadata row reads like an error (dagster-dbt's project object once showed as "(unserializable)").
    assert body.get_by_text("unserializable").count() == 0

    # "Materialize all" again, nothing changed: no model is rebuilt, and every check is evaluated again (a passed
    # result standing on unchanged data), not left "Skipped", with no warning about outputs the step did not yield.
    user.open("/asset-groups")
    again = user.launch("Materialize all")
    dev.wait_for_run(again, timeout=900)
    messages = [e.get("message") or "" for e in dev.graphql(RUN_LOGS, runId=again)["logsForRun"]["events"]]
    assert not [m for m in messages if "did not yield or return expected outputs" in m]
    assert any("Up to date, not rebuilt" in m for m in messages)
    for check in GRAPH.asset_check_keys:
        executions = dev.graphql(CHECK_EXECUTIONS, assetKey={"path": list(check.asset_key.path)}, checkName=check.name)[
            "assetCheckExecutions"
        ]
        assert (executions[0]["runId"], executions[0]["status"]) == (again, "SUCCEEDED"), check

    # One asset from its page, against a mirror that refuses the file: the run fails, saying why.
    new_ratings = [r | {"average_rating": "9.9"} if r["tconst"] == "tt0000001" else r for r in WORLD["title.ratings"]]
    write_files(mirror.root, {"title.ratings": new_ratings})
    mirror.broken[RATINGS.file_name] = 404
    user.open("/assets/raw/title_ratings")
    failed = user.launch("Materialize")
    dev.wait_for_run(failed, status="FAILURE")
    user.open(f"/runs/{failed}")
    page.get_by_text("404", exact=False).first.wait_for()
    user.screenshot("run-failed")

    # The mirror recovers; "Re-execute > From failure" on the failed run's page downloads the new release.
    del mirror.broken[RATINGS.file_name]
    reexecute = page.get_by_role("button", name=re.compile("Re-execute all"))
    reexecute.locator("xpath=following::button[1]").click()  # the arrow beside it: the other ways to re-execute
    page.get_by_role("menuitem", name=re.compile("From failure")).click()
    page.wait_for_url(re.compile(r"/runs/(?!" + failed + ")"))
    retry = page.url.rsplit("/", 1)[1]
    run = dev.wait_for_run(retry)
    assert run["parentRunId"] == failed
    assert {AssetKey(k["path"]) for k in run["assetSelection"]} == {raw_key(RATINGS)}

    # A group from its page: every parsed frame; only title.ratings is parsed again, with the new rating.
    user.open("/locations/imdb_assets/asset-groups/parsed_frames")
    group = user.launch("Materialize all")
    run = dev.wait_for_run(group)
    assert {AssetKey(k["path"]) for k in run["assetSelection"]} == {parsed_key(d) for d in DATASETS}
    frame = pl.read_parquet(data_dir / "parsed" / f"{RATINGS.table}.parquet")
    assert frame.filter(pl.col("tconst") == "tt0000001")["average_rating"].to_list() == [Decimal("9.9")]
