"""Drives the pages of a running `pneumo serve` in headless Chromium, as a person would.

usage: browser_check.py URL IMAGE SCREENSHOT_PREFIX [TOKEN [REFUSED_IMAGE]]

Opens the predict page, types the token if the page asks for one, ticks "explain", chooses
IMAGE in the file input, waits for the answer, switches to the explanation and back, then (when
given) uploads REFUSED_IMAGE, which the input gate should refuse, and prints what the page
showed as one JSON object (then the results page's first row). Screenshots go to
SCREENSHOT_PREFIX-predict.png, -explanation.png, -refused.png and -results.png.
Exit 0 when both pages showed an answer, 1 otherwise, 77 when Chromium or Selenium is missing.
"""
import json
import shutil
import sys

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("python3-selenium is not installed", file=sys.stderr)
    sys.exit(77)


def main():
    url, image, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    token = sys.argv[4] if len(sys.argv) > 4 else None
    refused_image = sys.argv[5] if len(sys.argv) > 5 else None
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("chromium or chromium-driver is not installed", file=sys.stderr)
        sys.exit(77)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1100"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(url + "/")
        if token:
            wait.until(ready.visibility_of_element_located((By.ID, "token")))
            browser.find_element(By.ID, "token").send_keys(token)
            browser.find_element(By.ID, "token-save").click()
        wait.until(lambda b: not b.find_element(By.ID, "model").text.startswith("Loading"))
        # Before the first upload the result panel (overlay, decision...) is not shown at all.
        result_shown_before_upload = browser.find_element(By.ID, "result").is_displayed()
        browser.find_element(By.ID, "explain").click()
        browser.find_element(By.ID, "file").send_keys(image)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
        shown = {
            "gate": browser.find_element(By.ID, "gate").text,
            "explanation_button": browser.find_element(By.ID, "toggle-explanation").is_displayed(),
            "result_shown_before_upload": result_shown_before_upload,
            "state": browser.find_element(By.TAG_NAME, "body").get_attribute("data-state"),
            "status": browser.find_element(By.ID, "status").text,
            "decision": browser.find_element(By.ID, "decision").text,
            "probability": browser.find_element(By.ID, "probability").text,
            "area": browser.find_element(By.ID, "area").text,
            "size": browser.find_element(By.ID, "size").text,
            "model": browser.find_element(By.ID, "model").text,
            "overlay_width": browser.execute_script("return document.getElementById('overlay').naturalWidth"),
        }
        browser.save_screenshot(prefix + "-predict.png")
        if shown["explanation_button"]:
            overlay_src = browser.find_element(By.ID, "overlay").get_attribute("src")
            browser.find_element(By.ID, "toggle-explanation").click()
            wait.until(lambda b: b.find_element(By.ID, "overlay").get_attribute("src") != overlay_src)
            wait.until(lambda b: b.execute_script("return document.getElementById('overlay').naturalWidth > 0"))
            shown["explanation_caption"] = browser.find_element(By.ID, "caption").text
            shown["explanation_width"] = browser.execute_script(
                "return document.getElementById('overlay').naturalWidth")
            browser.save_screenshot(prefix + "-explanation.png")
            browser.find_element(By.ID, "toggle-explanation").click()
            shown["back_to_overlay"] = browser.find_element(By.ID, "overlay").get_attribute("src") == overlay_src
        if refused_image:
            status_before = browser.find_element(By.ID, "status").text
            browser.find_element(By.ID, "file").send_keys(refused_image)
            wait.until(lambda b: b.find_element(By.ID, "status").text != status_before
                       and b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
            wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("Result"))
            shown["refused"] = {
                "gate": browser.find_element(By.ID, "gate").text,
                "decision": browser.find_element(By.ID, "decision").text,
                "probability": browser.find_element(By.ID, "probability").text,
                "image_shown": browser.find_element(By.ID, "figure").is_displayed(),
            }
            browser.save_screenshot(prefix + "-refused.png")

        browser.get(url + "/results")
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        wait.until(lambda b: b.execute_script(
            "const i = document.querySelector('#results tbody img'); return i !== null && i.naturalWidth > 0"))
        cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr:first-child td")]
        shown["results_row"] = cells
        browser.save_screenshot(prefix + "-results.png")
    finally:
        browser.quit()
    print(json.dumps(shown))
    sys.exit(0 if shown["state"] == "done" and cells else 1)


if __name__ == "__main__":
    main()
