"""The MLflow UI, checked the way a person would: in a headless Debian Chromium driven by Playwright."""

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by make test (make system-deps)
# As root on a closed network: no sandbox, no background connections to Google's hosts.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


@pytest.mark.browser
def test_a_finished_jobs_run_page_shows_params_loss_chart_and_figure(page, trained_job):
    ARTIFACTS.mkdir(exist_ok=True)
    run_name = f"job-{trained_job['id'][:8]}"
    page.goto(trained_job["mlflow"]["url"])

    expect(page.get_by_text(f"Parameters ({len(trained_job['params'])})")).to_be_visible(timeout=30_000)
    for name, value in trained_job["params"].items():
        expect(page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    page.screenshot(path=ARTIFACTS / "mlflow-run-overview.png", full_page=True)

    page.get_by_role("tab", name="Model metrics").click()
    expect(page.get_by_text(f"{run_name} (loss)")).to_be_visible(timeout=30_000)
    expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=30_000)  # loss, epoch_loss, echo_accuracy drawn
    page.screenshot(path=ARTIFACTS / "mlflow-run-metrics.png", full_page=True)

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("echo_figure.png").click()
    figure = page.locator("img[src^='blob:']").first
    expect(figure).to_be_visible(timeout=30_000)
    assert figure.evaluate("img => img.naturalWidth") >= 900
    page.screenshot(path=ARTIFACTS / "mlflow-run-artifacts.png", full_page=True)
