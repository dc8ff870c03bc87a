"""The live dashboard in a real headless Chromium (Selenium + Debian's chromium and chromium-driver): opened while
a workload runs, its charts draw points, its stat cards agree with GET /stats, and a screenshot is saved (with
UPDATE_SCREENSHOT=1 also to docs/dashboard.png, the README's picture).

Never skipped: without the browser the test fails and says what to install (`make test` installs it on
Debian/Ubuntu as root)."""
import json
import os
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from e2ekit import ROOT, wait_for
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from localcloud.dashboard import CHART_JS, dashboard_widgets
from scripts import loadgen

BROWSER_BINARIES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = ("the dashboard test needs a headless Chromium and its WebDriver: on Debian/Ubuntu "
                "`sudo apt-get install -y chromium chromium-driver` (`make test` does it as root); elsewhere install "
                "Chromium and a matching chromedriver on PATH")
# widgets drawn from the functions' EMF metrics and from what the local cloud records for AWS/Lambda, AWS/SageMaker
CHARTED = ("Events processed / batch size", "Cost per 1,000 events (USD): all lines / tunable by the batch size",
           "Batch: configured BatchSize / events / latency (s)", "Lambda duration p90 (ms)", "Lambda errors",
           "Iterator age (ms)", "Model latency (SageMaker, µs)", "DLQ / quarantine depth", "State machine executions")


@pytest.fixture(scope="module")
def browser():
    binary = next((shutil.which(b) for b in BROWSER_BINARIES if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail(f"{INSTALL_HINT} (found browser: {binary}, chromedriver: {driver_path})")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1300",
                     "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def points(driver, title: str) -> int:
    """Points Chart.js has laid out in the widget with this title (all its datasets)."""
    return driver.execute_script(
        """const el = [...document.querySelectorAll('.widget')].find(w => w.dataset.title === arguments[0]);
           const chart = el && Chart.getChart(el.querySelector('canvas'));
           return chart ? chart.data.datasets.reduce((n, _, i) => n + chart.getDatasetMeta(i).data.length, 0) : -1;""",
        title)


def card(driver, name: str) -> str:
    return driver.execute_script(
        "const c = document.querySelector(`[data-card='${arguments[0]}'] .value`); return c && c.textContent;", name)


def drift_as_cloudwatch_says(cloud) -> str:
    """The largest FeatureDriftMaxPSI of the last 24 h by GetMetricStatistics (the page uses GetMetricData), as the
    card prints it ("–": never published)."""
    env = next(iter(cloud.deployer.functions.values())).environment
    end = datetime.now(timezone.utc)
    points = cloud.client("cloudwatch").get_metric_statistics(
        Namespace=env["POWERTOOLS_METRICS_NAMESPACE"], MetricName="FeatureDriftMaxPSI",
        Dimensions=[{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}], StartTime=end - timedelta(days=1),
        EndTime=end + timedelta(seconds=1), Period=86400, Statistics=["Maximum"])["Datapoints"]
    return f"{max(p['Maximum'] for p in points):.3f}" if points else "–"


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_dashboard_draws_the_stack_dashboard_and_agrees_with_stats(cloud, api, browser, tmp_path):
    assert CHART_JS.is_file(), f"{CHART_JS} is missing: run `npm ci` (package.json pins chart.js)"
    started = time.monotonic()
    load = {}
    workload = threading.Thread(target=lambda: load.update(result=loadgen.run(
        cloud.api_url, events=1200, rate=80, seed=13, users=30)), daemon=True)
    workload.start()
    browser.get(cloud.dashboard_url + "?refresh=2&period=5&minutes=5")
    assert browser.title.startswith("Real-time inference")

    # every widget of the stack's CloudWatch dashboard is on the page, under its own title
    expected = {w["properties"]["title"] for w in dashboard_widgets(cloud.deployer) if w.get("type") == "metric"}
    wait_for(lambda: browser.execute_script("return window.dashboard.refreshes") >= 1, 30, what="the first refresh")
    titles = set(browser.execute_script("return [...document.querySelectorAll('.widget')].map(w => w.dataset.title)"))
    assert expected <= titles and set(CHARTED) <= expected

    # while the workload runs: the pipeline's metrics (EMF lines -> CloudWatch) are drawn, and events flow
    wait_for(lambda: all(points(browser, t) >= 2 for t in CHARTED), 60, what=f"points in {CHARTED}")
    wait_for(lambda: (card(browser, "events-per-second") or "–") not in ("–", "0.0"), 30, what="an events/s figure")
    workload.join(60)
    assert load["result"].accepted > 0

    # once the pipeline is idle, the next refreshes show what /stats says. (The drift monitor is not run here: its
    # metric would stay in the session cloud's CloudWatch and decide test_drift_alarm's alarm.)
    assert cloud.wait_idle(90)
    time.sleep(1.5)  # EMF lines are shipped every second
    status, stats = api.request("GET", "/stats")
    assert status == 200
    seen = browser.execute_script("return window.dashboard.refreshes")
    wait_for(lambda: browser.execute_script("return window.dashboard.refreshes") >= seen + 2, 30,
             what="two more refreshes")
    assert number(card(browser, "events-predicted")) == stats["events_predicted"]
    assert number(card(browser, "batch-size")) == stats["current_batch_size"]
    assert number(card(browser, "dlq")) == stats["stream_dlq_messages"]
    assert number(card(browser, "quarantine")) == stats["quarantine_messages"]
    assert number(card(browser, "cost")) == pytest.approx(stats["cost_per_1k_events_usd"], abs=5e-7)
    p50, p95, p99 = (number(v) for v in card(browser, "latency").split(" / "))
    assert 0 < p50 <= p95 <= p99
    assert card(browser, "drift") == drift_as_cloudwatch_says(cloud)
    _, variants = api.request("GET", "/variants/stats")
    assert all(v["name"] in card(browser, "ab") for v in variants["variants"])

    # the page holds what the data endpoint computed from the same sources (no second calculation in JS)
    last = browser.execute_script("return window.dashboard.last")
    assert last["cards"]["stats"]["events_predicted"] == stats["events_predicted"]
    assert browser.execute_script("return window.dashboard.errors") == 0

    screenshot = tmp_path / "dashboard.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1600, height + 140)  # + the headless window's own frame
    time.sleep(0.5)
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 20_000
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "dashboard.png")
    (tmp_path / "cards.json").write_text(json.dumps(last["cards"], indent=2, default=str))
    print(f"dashboard test: {time.monotonic() - started:.1f} s; screenshot {screenshot}")
