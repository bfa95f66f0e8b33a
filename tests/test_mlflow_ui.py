"""The MLflow UI, checked the way a person would: in a headless Debian Chromium driven by Playwright."""

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by make test (make system-deps)
# As root on a closed network: no sandbox, no background connections to Google's hosts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
    for name in trained_job["params"]:
        expect(page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    page.screenshot(path=ARTIFACTS / "mlflow-run-overview.png", full_page=True)

    page.get_by_role("tab", name="Model metrics").click()
    expect(page.get_by_text(f"{run_name} (loss)")).to_be_visible(timeout=30_000)
    # loss, epoch_loss, echo_accuracy and the held-out eval_echo_accuracy and eval_loss drawn
    expect(page.locator(".js-plotly-plot")).to_have_count(5, timeout=30_000)
    page.screenshot(path=ARTIFACTS / "mlflow-run-metrics.png", full_page=True)

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("echo_figure.png").click()
    figure = page.locator("img[src^='blob:']").first
    expect(figure).to_be_visible(timeout=30_000)
    assert figure.evaluate("img => img.naturalWidth") >= 900
    page.screenshot(path=ARTIFACTS / "mlflow-run-artifacts.png", full_page=True)


def chart_card(page, title: str):
    """The resizable cell of the Model metrics grid that holds the chart titled title (card and resize handle)."""
    return page.locator("div.react-resizable").filter(has=page.get_by_text(title, exact=True))


@pytest.mark.browser
def test_the_run_page_shows_the_last_figure_beside_the_loss_chart(page, trained_job):
    """The image metric echo_figure, as MLflow's image card shows it, next to the loss chart.

    The card opens at step 0 and only moves by itself when a single step has an image; the worker logs
    one per tenth of the run (here one per epoch), so a person moves the step slider to the last one.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    last_step = trained_job["progress"]["steps"]
    page.goto(trained_job["mlflow"]["url"])
    page.get_by_role("tab", name="Model metrics").click()
    expect(page.locator(".js-plotly-plot")).to_have_count(5, timeout=30_000)
    assistant = page.get_by_role("button", name="Close", exact=True)  # the MLflow Assistant side panel
    if assistant.is_visible():
        assistant.click()

    # The loss chart first and the figure beside it, each by the card's own menu.
    for title in ("echo_figure", "loss"):
        chart_card(page, title).get_by_test_id("experiment-view-compare-runs-card-menu").click()
        page.get_by_role("menuitem", name="Move to top").click()
    cells = page.locator("div.react-resizable")
    expect(cells.nth(0).get_by_text("loss", exact=True)).to_be_visible()
    expect(cells.nth(1).get_by_text("echo_figure", exact=True)).to_be_visible()

    figure_card = chart_card(page, "echo_figure")
    slider = figure_card.get_by_role("slider")
    expect(slider).to_have_attribute("aria-valuemax", str(last_step), timeout=30_000)
    expect(figure_card.get_by_text("No image logged at this step")).to_be_visible()  # step 0: what the README showed
    slider.focus()
    for _ in range(20):  # one image per tenth of the run at most: ArrowRight goes to the next step with one
        if slider.get_attribute("aria-valuenow") == str(last_step):
            break
        slider.press("ArrowRight")
    expect(slider).to_have_attribute("aria-valuenow", str(last_step))
    expect(figure_card.get_by_role("spinbutton")).to_have_value(str(last_step))

    image = figure_card.locator("img")
    expect(image).to_have_count(1, timeout=30_000)
    expect(image).to_be_visible()
    assert f"echo_figure%2Bstep%2B{last_step}%2B" in image.get_attribute("src")  # the final figure, as logged
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30_000)
    assert image.evaluate("img => img.naturalWidth") > 0
    expect(figure_card.get_by_text("No image logged at this step")).to_be_hidden()

    # The card cuts the image off at the grid's row height: make the row tall enough for all of it.
    handle = figure_card.get_by_test_id("draggable-card-resize-handle")
    card_box, image_box = figure_card.bounding_box(), image.bounding_box()
    missing = image_box["y"] + image_box["height"] - (card_box["y"] + card_box["height"]) + 80  # + the slider row
    if missing > 0:
        figure_card.hover()
        box = handle.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y + missing / 2, steps=5)
        page.mouse.move(x, y + missing, steps=5)
        page.mouse.up()
    page.mouse.move(0, 0)
    card_box, image_box, slider_box = figure_card.bounding_box(), image.bounding_box(), slider.bounding_box()
    assert card_box["y"] < image_box["y"] and image_box["y"] + image_box["height"] < slider_box["y"], (
        card_box,
        image_box,
    )
    assert slider_box["y"] + slider_box["height"] < card_box["y"] + card_box["height"]
    loss_box = chart_card(page, "loss").bounding_box()
    assert abs(loss_box["y"] - card_box["y"]) < 2  # side by side, in the same row

    # The run's name and tabs above, the loss chart and the figure's card in the row below.
    main = page.locator("main")
    main_box = main.bounding_box()
    bottom = max(card_box["y"] + card_box["height"], loss_box["y"] + loss_box["height"]) + 4
    page.set_viewport_size(
        {"width": 1400, "height": int(bottom) + 200}
    )  # the Assistant's floating button below the clip
    page.screenshot(
        path=ARTIFACTS / "mlflow-run-figure.png",
        clip={"x": main_box["x"], "y": 0, "width": main_box["width"], "height": bottom},
    )
