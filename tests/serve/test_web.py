"""The web chat page in a real headless Chromium (system package), driven by Selenium + chromedriver."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx")

def answer_part(text: str) -> str:
    """The page's split of a reply: the text outside <think>…</think> (as splitThink in index.html)."""
    i = text.find("<think>")
    if i < 0:
        return text
    j = text.find("</think>", i)
    return text[:i] if j < 0 else text[:i] + text[j + len("</think>"):]


def send(driver, text: str, n_before: int):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-done='1']")) > n_before)
    return driver.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]


def test_page_streams_an_answer_and_keeps_the_conversation(open_server, browser, helpers, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(open_server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "model").text == "tiny")
    first = send(browser, "Hello world! Open data?", 0)
    assert "error" not in first.get_attribute("class")
    expected = httpx.post(open_server.url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": [{"role": "user", "content": "Hello world! Open data?"}],
        "temperature": 0, "top_p": 1, "max_tokens": 128}).json()["choices"][0]["message"]["content"]
    shown = first.find_element(By.CSS_SELECTOR, ".answer-text").get_attribute("textContent")
    assert shown == answer_part(expected).strip() and shown

    # a second turn: the page sends the whole conversation (user, assistant, user)
    second = send(browser, "And open code?", 1)
    history = [{"role": "user", "content": "Hello world! Open data?"},
               {"role": "assistant", "content": answer_part(expected)},
               {"role": "user", "content": "And open code?"}]
    expected2 = httpx.post(open_server.url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": history, "temperature": 0, "top_p": 1, "max_tokens": 128,
    }).json()["choices"][0]["message"]["content"]
    assert second.find_element(By.CSS_SELECTOR, ".answer-text").get_attribute("textContent") == \
        answer_part(expected2).strip()
    assert len(browser.find_elements(By.CSS_SELECTOR, ".msg.user")) == 2
    shot = helpers.screenshot_dir(tmp_path) / "web_chat.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    print(f"screenshot: {shot}")
