"""Plan prices from the bundled snapshot: read in-process by SkyPilot's own reader, cached, rebuilt when the
cache is corrupt; one row per GPU kind, count and cloud unless --all-regions; GCP priced with its host VM."""

from __future__ import annotations

import json

import pytest
from clitools import invoke
from fakesky import FakeSky

from launcher.plan import catalog
from launcher.plan import offers as plan
from launcher.sky import skyapi


@pytest.fixture
def counted_reader(monkeypatch):
    """Count the snapshot reads (the real reader still runs)."""
    calls = []
    real = skyapi.list_gpu_offers_from_snapshot

    def reader(names, cloud, folder):
        calls.append(cloud)
        return real(names, cloud, folder)

    monkeypatch.setattr(skyapi, "list_gpu_offers_from_snapshot", reader)
    return calls


def _plan(**kw):
    cat = catalog.load()
    return plan.build(cat, cat.model(kw.pop("model", "20b")), **kw)


def test_snapshot_is_read_once_then_from_the_cache(counted_reader):
    first = _plan(clouds=["lambda", "verda"])
    assert sorted(counted_reader) == ["lambda", "verda"]
    again = _plan(clouds=["lambda", "verda"])
    assert sorted(counted_reader) == ["lambda", "verda"]  # no second read
    assert [o.to_dict() for o in again.offers] == [o.to_dict() for o in first.offers]


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                 # half-written
    lambda text: "",                                     # empty
    lambda text: "\x00\xff garbage",                     # not JSON
    lambda text: json.dumps([1, 2, 3]),                  # JSON of the wrong shape
    lambda text: text.replace('"price": ', '"price": "x", "was": ', 1),  # a row of the wrong type
    lambda text: text.replace('"sha256": "', '"sha256": "0', 1),         # stale: the snapshot changed
])
def test_a_corrupt_or_half_written_cache_is_rebuilt(counted_reader, damage):
    from launcher.sky import state

    good = _plan(clouds=["lambda"])
    path = state.home() / "cache" / "price-snapshot.json"
    path.write_text(damage(path.read_text()))
    counted_reader.clear()
    again = _plan(clouds=["lambda"])
    assert counted_reader == ["lambda"]  # read again from the snapshot
    assert [o.to_dict() for o in again.offers] == [o.to_dict() for o in good.offers]
    json.loads(path.read_text())  # and the cache was rewritten whole


def test_a_cache_folder_that_cannot_be_written_is_only_slower(counted_reader):
    from launcher.sky import state

    (state.home()).mkdir(parents=True, exist_ok=True)
    (state.home() / "cache").write_text("a file where the cache folder should be")
    assert _plan(clouds=["lambda"]).offers and counted_reader == ["lambda"]


def test_an_unreadable_snapshot_names_the_file_never_a_python_class(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "catalogs"
    shutil.copytree(catalog.catalog_dir(), copy)
    csv = copy / "prices" / "v8" / "lambda" / "vms.csv"
    csv.write_text(csv.read_text()[:200])  # cut mid-row: a half-copied file
    monkeypatch.setenv("GPTOSS_SKY_CATALOGS", str(copy))
    catalog.load.cache_clear()
    try:
        result = invoke("plan", "20b", "--clouds", "lambda")
    finally:
        catalog.load.cache_clear()
    assert result.exit_code in (1, 2) and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "lambda/vms.csv" in line
    for name in ("Error(", "KeyError", "ParserError", "ValueError", "TypeError", "IndexError"):
        assert name not in line, line


def test_one_row_per_gpu_count_and_cloud_unless_all_regions():
    by_cloud = _plan(clouds=["runpod", "lambda"])
    keys = [(o.gpu, o.count, o.cloud) for o in by_cloud.offers]
    assert len(keys) == len(set(keys))
    every = _plan(clouds=["runpod", "lambda"], all_regions=True)
    assert len(every.offers) > len(by_cloud.offers)
    for o in by_cloud.offers:  # the row shown is its cloud's cheapest region for that GPU kind and count
        same = [e.price_per_hour for e in every.offers if (e.gpu, e.count, e.cloud) == (o.gpu, o.count, o.cloud)]
        assert o.price_per_hour == min(same)


def test_plan_table_fits_80_columns_and_formats_money_the_same_way():
    result = invoke("plan", "120b", "--clouds", "runpod,shadeform,vast")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    prices = [word for line in lines[1:] for word in line.split() if word.startswith("$")]
    assert prices and all(p.count(".") == 1 for p in prices)
    hourly = {len(p.split(".")[1]) for p in prices[0::2]}
    per_token = {len(p.split(".")[1]) for p in prices[1::2]}
    assert hourly == {2} and per_token == {3}, prices


@pytest.fixture
def gcp_seeded(isolated_env, monkeypatch):
    """SkyPilot's catalog folder (this test's: conftest's skypilot_catalog_folder) holds the bundled GCP rows;
    GCP enabled as SkyPilot's own tests do."""
    import shutil

    import sky
    from sky import check as sky_check

    folder = isolated_env / ".sky" / "catalogs" / "v8"
    for name in ("gcp/vms.csv", "common/accelerators.csv"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(plan.snapshot_folder() / name, folder / name)
    monkeypatch.setattr(sky_check, "get_cached_enabled_clouds_or_refresh", lambda *a, **k: [sky.clouds.GCP()])
    # The client asks the API server which clouds are enabled; FakeSky answers as the server would.
    monkeypatch.setattr(skyapi, "enabled_clouds", FakeSky(enabled_infra=["gcp"]).enabled_clouds)
    return folder


@pytest.mark.parametrize("model, gpu, count", [("20b", "L4", 1), ("20b", "A100", 1), ("120b", "H100", 1),
                                               ("120b", "A100-80GB", 1)])
def test_gcp_is_priced_offline_as_skypilots_optimizer_prices_it(gcp_seeded, monkeypatch, model, gpu, count):
    """The bundled GCP rows carry the host VMs: our price for a GPU is the one SkyPilot's optimizer would pay
    for the same task (GPU plus host VM), in the same region."""
    import yaml

    from launcher import lifecycle
    from launcher.node import render

    cat = catalog.load()
    with monkeypatch.context() as m:  # plan as on a machine with no GCP catalog cached: from the snapshot
        m.setattr(skyapi, "real_catalog_path", lambda cloud: "/nonexistent/vms.csv")
        ours = plan.build(cat, cat.model(model), gpu_specs=[(cat.gpu(gpu), count)], clouds=["gcp"])
    assert ours.offers, "GCP has no priced offer: the host VM rows are missing"
    first = ours.offers[0]
    assert first.cloud == "gcp" and first.price_source.startswith("bundled snapshot")
    deployment = lifecycle.deployment_for("gptoss-gcp", lifecycle.choose_recipes(ours), service=False)
    best = skyapi.optimize(yaml.safe_load(render.render_text(cat, deployment)))
    assert best["cloud"] == "gcp" and best["instance_type"] == first.instance_type
    assert best["price_per_hour"] == pytest.approx(first.price_per_hour, rel=1e-6)
    gpu_only = min(r["price"] for r in _gpu_rows_only(gpu, count))
    assert first.price_per_hour > gpu_only  # the host VM is billed on top of the GPU


def _gpu_rows_only(gpu, count):
    import csv

    with open(plan.snapshot_folder() / "gcp" / "vms.csv") as f:
        return [dict(price=float(r["Price"])) for r in csv.DictReader(f)
                if r["AcceleratorName"] == gpu and r["AcceleratorCount"] and float(r["AcceleratorCount"]) == count]


def test_money_is_written_one_way_everywhere():
    """$/hour and costs in cents, $ per 1M tokens to a tenth of a cent, never trimmed ($1.2 vs $1.16)."""
    from launcher.cli import _common, verify

    assert [_common.money(v) for v in (1.2, 1.16, 12.0, 1234.5)] == ["$1.20", "$1.16", "$12.00", "$1,234.50"]
    assert _common.money(0.1377, 3) == verify._price(0.1377) == "$0.138"
    assert verify._price(4.0) == "$4.000" and _common.money(None) == verify._price(None) == "-"


def test_a_half_downloaded_skypilot_catalog_falls_back_to_the_snapshot_and_says_which_file(isolated_env):
    folder = isolated_env / ".sky" / "catalogs" / "v8"  # SkyPilot's, for this test (conftest)
    (folder / "lambda").mkdir(parents=True)
    (folder / "lambda" / "vms.csv").write_text("InstanceType,AcceleratorName,Accelerat\ngpu_1x_a1")  # cut short
    as_json = invoke("plan", "20b", "--clouds", "lambda", "--json")
    table = invoke("plan", "20b", "--clouds", "lambda")
    assert as_json.exit_code == table.exit_code == 0, as_json.stderr + table.stderr
    offers = json.loads(as_json.stdout)
    assert offers and {o["cloud"] for o in offers} == {"lambda"}
    assert all(o["price_source"].startswith("bundled snapshot") for o in offers)
    note = " ".join(table.stderr.split())
    assert "lambda/vms.csv" in note and "delete it" in note and "Traceback" not in table.stderr
