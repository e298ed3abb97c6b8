"""Prices per endpoint: the one formula, which endpoint's price applies, and what has none."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc_eval.runs.config import ConfigError, load_config
from esc_eval.runs.pricing import Price, Prices, unpriced, usd_text

CONFIG = """
[run]
cost_limit = 5
[[seekers]]
name = "cheap"
base_url = "http://127.0.0.1:1/v1"
model = "s1"
price = {{ input = 0.5, output = 1.5 }}
[[seekers]]
name = "free"
base_url = "http://127.0.0.1:1/v1"
model = "s2"
[[supporters]]
name = "a"
base_url = "http://127.0.0.1:1/v1"
model = "y"
price = {{ input = 2, output = 8 }}
[judge]
base_url = "http://127.0.0.1:1/v1"
model = "j"
price = {{ input = 1, output = 4 }}
{safety}
"""


def _config(tmp_path: Path, safety: str = "") -> Path:
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(safety=safety))
    return path


def test_usd_is_tokens_times_price_per_million() -> None:
    assert Price(2.0, 8.0).usd(1_000_000, 0) == pytest.approx(2.0)
    assert Price(2.0, 8.0).usd(250_000, 125_000) == pytest.approx(0.5 + 1.0)
    assert Price(0.0, 0.0).usd(10**9, 10**9) == 0.0


def test_dollars_read_as_cents_from_a_dollar_up_and_unknown_as_a_dash() -> None:
    assert usd_text(1234.5) == "$1,234.50" and usd_text(0.01234) == "$0.0123" and usd_text(0.0) == "$0"
    assert usd_text(None) == "–"


def test_each_record_finds_its_endpoints_price(tmp_path: Path) -> None:
    prices = Prices.of(load_config(_config(tmp_path, "[safety]")))
    assert prices.seeker("cheap") == Price(0.5, 1.5)
    assert prices.seeker("free") is None                      # no price: unknown, not free
    assert prices.supporter("a") == Price(2.0, 8.0) and prices.supporter("gone") is None
    assert prices.judge == Price(1.0, 4.0)
    assert prices.safety == Price(1.0, 4.0)                   # [safety] on the judge's model takes its price
    assert prices.any
    # one request finds its endpoint by its role and its episode's seeker and supporter
    assert prices.request("seeker", seeker="cheap", supporter="a") == Price(0.5, 1.5)
    assert prices.request("supporter", seeker="cheap", supporter="a") == Price(2.0, 8.0)
    assert prices.request("judge", seeker="cheap", supporter="a") == Price(1.0, 4.0)
    assert prices.request("safety") == Price(1.0, 4.0)
    assert prices.request("supporter", supporter="gone") is None and prices.request("nobody") is None


def test_a_safety_judge_on_another_model_needs_its_own_price(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, '[safety]\nmodel = "other"'))
    assert Prices.of(config).safety is None
    assert unpriced(config, safety=True) == ["[seekers[1]]", "[safety]"]
    priced = load_config(_config(tmp_path, '[safety]\nmodel = "other"\nprice = { input = 3, output = 3 }'))
    assert Prices.of(priced).safety == Price(3.0, 3.0)


def test_prices_never_change_the_fingerprint(tmp_path: Path) -> None:
    first = load_config(_config(tmp_path)).fingerprint()
    changed = CONFIG.replace("input = 2, output = 8", "input = 20, output = 80").replace("cost_limit = 5", "cost_limit = 9\ncache = 'c.sqlite'")
    path = tmp_path / "changed.toml"
    path.write_text(changed.format(safety=""))
    assert load_config(path).fingerprint() == first



PRICE = "input = 2, output = 8"


@pytest.mark.parametrize(("old", "new", "expected"), [
    (PRICE, "output = 8", "[supporters[0]] field 'price': missing key 'input' (both input and output"),
    (PRICE, "input = 2, output = 8, cached = 1", "[supporters[0]] field 'price': unknown key 'cached'"),
    (PRICE, "input = -1, output = 8", "[supporters[0]] field 'price': input must be a finite amount of at least 0 (USD per million tokens), got -1"),
    (PRICE, "input = 2, output = inf", "[supporters[0]] field 'price': output must be a finite amount of at least 0 (USD per million tokens), got i"),
    (PRICE, "input = '2', output = 8", "[supporters[0]] field 'price': must be a table of numbers, got {'input': '2', 'output': 8}"),
    ("cost_limit = 5", "cost_limit = 0", "[run] field 'cost_limit': must be positive, got 0.0"),
    ("cost_limit = 5", "cache_mode = 'rw'", "[run] field 'cache_mode': must be one of read-write, read, off, got 'rw'"),
])
def test_bad_prices_and_budgets_name_the_file_section_field_and_value(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace(old, new).format(safety=""))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {expected}") and "\n" not in str(raised.value)
