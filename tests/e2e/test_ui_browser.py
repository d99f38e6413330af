"""/ui/ in a real browser against a real ``pyfaasd up``: Debian's chromium, headless, through Debian's
chromium-driver (Selenium). Never a downloaded browser: without /usr/bin/chromium and /usr/bin/chromedriver the
tests skip (scripts/setup installs both).

The page is opened as ``http://user:password@host:port/ui/``, the way the README shows it, so every request the
page makes must be built from ``location.origin`` with the browser's cached credentials. A screenshot of each
page goes to the test's tmp dir (``screenshots/``), named in order.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.provider_harness import http, wait_for
from tests.stack_fixtures import ECHO, MakeStack, docker_only

pytestmark = pytest.mark.docker

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HANDLER = (
    "def handle(event, context):\n"
    "    print('pasted handler called', flush=True)\n"
    "    return 'pasted says ' + event.body.decode()\n"
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path / "chromium-profile"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Pages:
    """The test's view of the UI: find things by their visible labels, as a person or a screen reader does."""

    def __init__(self, driver: WebDriver, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.taken = 0
        shots.mkdir(parents=True, exist_ok=True)

    def wait(self, timeout: float = 60.0) -> WebDriverWait[WebDriver]:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1)

    def screenshot(self, what: str) -> None:
        self.taken += 1
        self.driver.save_screenshot(str(self.shots / f"{self.taken:02d}-{what}.png"))

    def go(self, fragment: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", fragment)

    def field(self, label: str, within: WebElement | None = None) -> WebElement:
        """The control whose <label> says exactly ``label`` (waited for: a list the page is redrawing makes the
        elements found a moment ago stale)."""
        root = within or self.driver

        def one(_driver: WebDriver) -> WebElement | Literal[False]:
            labels = [e for e in root.find_elements(By.TAG_NAME, "label") if e.is_displayed() and e.text == label]
            return len(labels) == 1 and self.driver.find_element(By.ID, labels[0].get_attribute("for") or "")

        return self.settled(10).until(one, f"not one visible label {label!r}")

    def button(self, text: str, within: WebElement | None = None) -> WebElement:
        """The one visible button (or link styled as one) with this text or aria-label (waited for, as fields)."""
        root = within or self.driver

        def one(_driver: WebDriver) -> WebElement | Literal[False]:
            found = [
                e
                for e in root.find_elements(By.CSS_SELECTOR, "button, a.button")
                if e.is_displayed() and (e.text == text or e.get_attribute("aria-label") == text)
            ]
            return len(found) == 1 and found[0]

        return self.settled(10).until(one, f"not one visible button {text!r}")

    def settled(self, timeout: float) -> WebDriverWait[WebDriver]:
        """A wait that looks again when an element it found went stale (the page redrew it)."""
        return WebDriverWait(
            self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )

    def form(self, heading: str) -> WebElement:
        return self.driver.find_element(By.XPATH, f"//form[.//h2[normalize-space()='{heading}']]")

    def row(self, function: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, f"#functions-table tr[data-function='{function}']")

    def text_appears(self, locator: tuple[str, str], text: str, timeout: float = 60.0) -> None:
        self.wait(timeout).until(expected_conditions.text_to_be_present_in_element(locator, text))

    def function_listed(self, function: str) -> bool:
        self.button("Refresh").click()
        return bool(self.driver.find_elements(By.CSS_SELECTOR, f"#functions-table tr[data-function='{function}']"))


@docker_only(
    "swarm: passes (33 s in CI), skipped for CI time; the UI speaks the gateway's API alone, which the faas-cli "
    "flow and the code and volume tests cover on swarm"
)
def test_the_ui_in_a_browser(make_stack: MakeStack, name: str, browser: WebDriver, tmp_path: Path) -> None:
    stack = make_stack(PYFAASD_AUTOSCALE="false")
    secrets = stack.state_dir / "secrets"
    user = (secrets / "basic-auth-user").read_text().strip()
    password = (secrets / "basic-auth-password").read_text().strip()
    existing, from_image, from_code, from_zip = f"{name}-a", f"{name}-img", f"{name}-code", f"{name}-zip"
    routes = {"com.pyfaasd.domain": f"{name}.example.com", "com.pyfaasd.path": f"/{name}"}
    deploy = {"service": existing, "image": ECHO, "annotations": routes}
    assert stack.call("POST", "/system/functions", deploy).status == 202
    ui = Pages(browser, tmp_path / "screenshots")

    # Log in: the credentials in the URL; the page's own requests carry them from the browser's cache.
    browser.get(f"http://{user}:{password}@127.0.0.1:{stack.gateway_port}/ui/")
    ui.wait().until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-function='{existing}']"))
    )
    row = ui.row(existing)
    assert "Ready" in row.text
    assert ECHO in row.text
    url = row.find_element(By.CSS_SELECTOR, "input.url").get_attribute("value")
    assert url == f"{stack.url}/function/{existing}"
    ui.screenshot("functions")

    # Its page shows its own routes (issue 17) beside /function/<name>.
    ui.go(f"#function/{existing}")
    ui.text_appears((By.ID, "function-title"), existing)
    ui.text_appears((By.ID, "function-facts"), "Routes")
    shown = [i.get_attribute("value") for i in browser.find_elements(By.CSS_SELECTOR, "#function-facts input.url")]
    assert f"http://{name}.example.com:{stack.gateway_port}/" in shown
    assert f"{stack.url}/{name}/" in shown
    ui.screenshot("function-routes")

    # Deploy from an image.
    browser.find_element(By.LINK_TEXT, "Deploy").click()
    image_form = ui.form("From an image")
    ui.field("Image", image_form).send_keys(ECHO)
    ui.field("Name", image_form).send_keys(from_image)
    ui.button("Deploy", image_form).click()
    ui.text_appears((By.CSS_SELECTOR, "#deploy-image .result"), f"Deployed {from_image}.")
    ui.screenshot("deploy-image")

    # Deploy from a pasted handler.
    code_form = ui.form("From code")
    ui.wait().until(lambda _: Select(ui.field("Runtime", code_form)).options)
    ui.field("Name", code_form).send_keys(from_code)
    handler = ui.field("Handler (handler.py)", code_form)
    handler.clear()
    browser.execute_script("arguments[0].value = arguments[1]", handler, HANDLER)  # as a paste: no auto-indent
    ui.button("Deploy code", code_form).click()
    ui.text_appears((By.CSS_SELECTOR, "#deploy-code .result"), f"Deployed {from_code}.", timeout=90)
    ui.screenshot("deploy-code")
    listed = json.loads(stack.call("GET", "/system/functions").text)
    code_status = next(f for f in listed if f["name"] == from_code)
    assert code_status["annotations"]["com.pyfaasd.code"].startswith("sha256:")

    # Deploy from an uploaded zip (the same form, a file chosen instead of the editor's text).
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return 'zipped'\n")
    ui.go("#deploy")
    code_form = ui.form("From code")
    name_field = ui.field("Name", code_form)
    name_field.clear()
    name_field.send_keys(from_zip)
    ui.field("Or a file (.py, .zip, .tar.gz)", code_form).send_keys(str(bundle))
    ui.button("Deploy code", code_form).click()
    ui.text_appears((By.CSS_SELECTOR, "#deploy-code .result"), f"Deployed {from_zip}.", timeout=90)
    assert http("GET", f"{stack.url}/function/{from_zip}").body == b"zipped"

    # The list shows them; Invoke leads to the function's page.
    ui.go("#functions")
    wait_for(lambda: ui.function_listed(from_image) and ui.function_listed(from_code), timeout=30, what="both listed")
    ui.button(f"Invoke {from_code}").click()
    ui.text_appears((By.ID, "function-title"), from_code)
    invoke_form = ui.form("Invoke")
    Select(ui.field("Method", invoke_form)).select_by_visible_text("POST")
    ui.field("Body", invoke_form).send_keys("from the browser")
    ui.button("Invoke", invoke_form).click()
    ui.text_appears((By.ID, "invoke-response-body"), "pasted says from the browser")
    assert browser.find_element(By.ID, "invoke-status").text == "200 OK"
    assert browser.find_element(By.ID, "invoke-duration").text.endswith(" ms")
    # The rate chart picks the call up from /metrics on a later poll (every 5 s).
    ui.text_appears((By.ID, "rate-chart"), "max ", timeout=30)
    assert browser.find_elements(By.CSS_SELECTOR, "#rate-chart circle")  # the interval with the call, drawn
    assert browser.find_elements(By.CSS_SELECTOR, "#latency-chart circle")
    ui.screenshot("invoke")

    # Logs: the handler's print arrives in the followed stream.
    ui.button("Follow logs").click()
    ui.text_appears((By.ID, "logs-output"), "pasted handler called")
    ui.screenshot("logs")
    ui.button("Stop following").click()

    # The image function echoes what it got: a GET with a header typed in, and not the browser's /system login.
    ui.go(f"#function/{from_image}")
    ui.text_appears((By.ID, "function-title"), from_image)
    invoke_form = ui.form("Invoke")
    Select(ui.field("Method", invoke_form)).select_by_visible_text("GET")
    ui.field("Headers (one Name: value a line)", invoke_form).send_keys("X-From: the-ui")
    ui.button("Invoke", invoke_form).click()
    ui.text_appears((By.ID, "invoke-response-body"), "the-ui")
    echoed = json.loads(browser.find_element(By.ID, "invoke-response-body").text)
    headers = {key.lower(): value for key, value in echoed["headers"].items()}
    assert (echoed["method"], headers["x-from"]) == ("GET", "the-ui")
    assert "authorization" not in headers

    # Scale the image function to 2.
    scale_form = ui.form("Scale")
    replicas = ui.field("Replicas", scale_form)
    replicas.clear()
    replicas.send_keys("2")
    ui.button("Scale", scale_form).click()
    ui.text_appears((By.CSS_SELECTOR, "#scale-form .result"), f"Scaled {from_image} to 2.")
    assert len(stack.hosts(from_image)) == 2
    ui.screenshot("scale")

    # Remove, after the confirm dialog (Cancel first: nothing happens).
    ui.button("Remove").click()
    dialog = browser.find_element(By.ID, "confirm-dialog")
    assert f"Remove the function {from_image}?" in dialog.text
    ui.screenshot("remove-confirm")
    ui.button("Cancel", dialog).click()
    assert stack.call("GET", f"/system/function/{from_image}").status == 200
    ui.button("Remove").click()
    ui.button(f"Remove {from_image}", dialog).click()
    ui.wait().until(lambda d: d.execute_script("return location.hash") == "#functions")
    assert stack.call("GET", f"/system/function/{from_image}").status == 404
    wait_for(lambda: not ui.function_listed(from_image), timeout=10, what="the removed function unlisted")

    # Secrets and volumes.
    ui.go("#secrets")
    secret_form = ui.form("Create a secret")
    ui.field("Secret name", secret_form).send_keys(f"{name}-key")
    ui.field("Value", secret_form).send_keys("hush")
    ui.button("Create secret", secret_form).click()
    ui.text_appears((By.ID, "secrets-list"), f"{name}-key")
    ui.screenshot("secrets")
    ui.button(f"Remove {name}-key").click()
    ui.button(f"Remove {name}-key", browser.find_element(By.ID, "confirm-dialog")).click()
    ui.wait().until(lambda d: f"{name}-key" not in d.find_element(By.ID, "secrets-list").text)
    ui.go("#volumes")
    volume_form = ui.form("Create a volume")
    ui.field("Volume name", volume_form).send_keys(f"{name}-data")
    ui.button("Create volume", volume_form).click()
    ui.text_appears((By.ID, "volumes-list"), f"{name}-data")
    ui.screenshot("volumes")
    assert stack.call("DELETE", "/system/volumes", {"name": f"{name}-data"}).status == 200

    # On a phone: the list is one card per function, nothing wider than the screen.
    browser.set_window_size(390, 844)
    ui.go("#functions")
    ui.wait().until(lambda _: ui.row(from_code).is_displayed())
    width = browser.execute_script("return document.documentElement.scrollWidth")
    inner = browser.execute_script("return window.innerWidth")
    assert width <= inner, (width, inner)
    ui.screenshot("functions-phone")

    # The page loaded nothing from anywhere but this origin.
    try:
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    except JavascriptException:  # pragma: no cover - the entries are standard
        loaded = []
    assert loaded
    assert {urlsplit(str(u)).netloc.rpartition("@")[2] for u in loaded} == {f"127.0.0.1:{stack.gateway_port}"}, loaded
    assert ui.taken >= 8
    assert http("GET", f"{stack.url}/ui/").status == 401  # and without the browser's credentials: refused
