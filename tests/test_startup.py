"""SkyServe's readiness window and plan's time to ready come from the measured phases in catalogs/startup.yaml."""

from __future__ import annotations

import pytest
import yaml

from launcher.errors import CatalogError
from launcher.node import render
from launcher.plan import catalog, recipes, startup


def window(model: str, gpus: tuple[str, ...], dummy: bool = False) -> int:
    cat = catalog.load()
    rs = tuple(recipes.build(cat, cat.model(model), cat.gpu(g), 1, dummy_weights=dummy)
               for g in gpus)
    config = render.render_config(cat, render.Deployment(name="x", recipes=rs, service=True))
    return config["service"]["readiness_probe"]["initial_delay_seconds"]


def test_window_follows_the_measured_start_not_a_constant(edit):
    before = window("20b", ("H200",))
    measured = startup.load().engine_start_seconds["gpt-oss-20b"]["H200"]["cold"]
    data = edit("startup.yaml", lambda d: d["engine_start_seconds"]["gpt-oss-20b"]["H200"].update(cold=700))
    after = window("20b", ("H200",))
    # (700 - measured) s more of measured start: that times the stated margin factor more window (rounded to 10 s).
    assert abs((after - before) - (700 - measured) * data["probe_margin"]["factor"]) <= 10
    # The window covers the measured cold start, the disk read of the real weights and the stated margin.
    cat = catalog.load()
    read = cat.model("20b").checkpoint_gib * 1.073741824 / data["weights_read_gb_per_s"]
    assert after >= (700 + read) * data["probe_margin"]["factor"] + data["probe_margin"]["plus_seconds"]


def test_the_first_replica_is_cold_so_the_window_ignores_the_warm_figure(edit):
    before = window("120b", ("H200",))
    edit("startup.yaml", lambda d: d["engine_start_seconds"]["gpt-oss-120b"]["H200"].update(warm=1))
    assert window("120b", ("H200",)) == before


def test_a_service_over_several_gpus_waits_for_the_slowest_and_unmeasured_gpus_get_the_factor(edit):
    h200 = window("20b", ("H200",))
    both = window("20b", ("H200", "L4"))
    assert both > h200
    edit("startup.yaml", lambda d: d.update(unmeasured_gpu_factor=1.0))
    assert window("20b", ("H200", "L4")) == h200  # L4 unmeasured: the H200 figure times a factor of 1


def test_dummy_weights_read_nothing_from_disk(edit):
    assert window("120b", ("H200",), dummy=True) < window("120b", ("H200",))
    edit("startup.yaml", lambda d: d.update(weights_read_gb_per_s=1e9))
    assert window("120b", ("H200",), dummy=True) == window("120b", ("H200",))


def test_fine_tunes_use_their_base_measurement():
    cat = catalog.load()
    assert startup.engine_start(cat.model("gpt-oss-safeguard-20b"), "H200") == \
        startup.engine_start(cat.model("20b"), "H200")
    assert startup.engine_start(cat.model("20b"), "H200", cached=True)[0] < \
        startup.engine_start(cat.model("20b"), "H200")[0]


def test_time_to_ready_adds_provisioning_install_download_and_start(catalogs):
    cat = catalog.load()
    recipe = recipes.build(cat, cat.model("120b"), cat.gpu("H200"), 1)
    data = yaml.safe_load((catalog.catalog_dir() / "startup.yaml").read_text())
    est = startup.time_to_ready(recipe, "aws")
    assert est["phases"]["provision"] == data["provision_seconds"]["default"]
    assert est["phases"]["download"] == round(cat.model("120b").checkpoint_gib * 1.073741824
                                              / data["download_gb_per_s"])
    assert abs(est["seconds"] - sum(est["phases"].values())) <= 2
    assert startup.time_to_ready(recipe, "kubernetes/ctx")["seconds"] < est["seconds"]


def test_a_measurement_without_a_cold_figure_is_a_catalog_error(edit):
    edit("startup.yaml", lambda d: d["engine_start_seconds"]["gpt-oss-20b"].update(L4={"warm": 100}))
    with pytest.raises(CatalogError, match="needs a cold figure"):
        startup.load()


def test_sglang_is_not_covered_by_the_vllm_measurement():
    cat = catalog.load()
    vllm = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1)
    sglang = recipes.build(cat, cat.model("20b"), cat.gpu("H200"), 1, engine="sglang")
    assert startup.initial_delay_seconds((sglang,)) > startup.initial_delay_seconds((vllm,))


def test_plan_shows_the_time_to_ready_next_to_the_price():
    from clitools import invoke

    result = invoke("plan", "20b", "--clouds", "runpod", "--gpu", "H200", "--json")
    assert result.exit_code == 0, result.output
    offers = __import__("json").loads(result.stdout)
    data = yaml.safe_load((catalog.catalog_dir() / "startup.yaml").read_text())
    for offer in offers:
        ready = offer["time_to_ready"]
        # The H200 start is the measured cold start plus the disk read of the real weights.
        read = catalog.load().model("20b").checkpoint_gib * 1.073741824 / data["weights_read_gb_per_s"]
        assert ready["phases"]["start"] == round(data["engine_start_seconds"]["gpt-oss-20b"]["H200"]["cold"] + read)
        assert ready["start_basis"] == "measured on H200 (cold)"
    # On a terminal wide enough (a TTY; piped output is 80 columns), the READY column sits next to the price.
    import io

    from rich.console import Console

    from launcher.cli import planning
    from launcher.plan import offers as plan_mod

    cat = catalog.load()
    result = plan_mod.build(cat, cat.model("20b"), gpu_specs=[(cat.gpu("H200"), 1)], clouds=["runpod"])
    buf = io.StringIO()
    planning.print_plan(result, 5, console=Console(file=buf, width=140))
    header, first = buf.getvalue().splitlines()[:2]
    assert header.split()[:5] == ["GPU", "CLOUD", "REGION", "INSTANCE", "$/HOUR"] and header.split()[5] == "READY"
    assert f"~{round(offers[0]['time_to_ready']['seconds'] / 60)} min" in first
