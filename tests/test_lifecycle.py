"""plan, the optimizer and the lifecycle, offline: a seeded SkyPilot catalog, real parser and optimizer,
and the contract-checked FakeSky only at the seam where SkyPilot would reach a cloud."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml
from click.testing import CliRunner
from fakesky import FakeSky, Script
from seeds import LAMBDA_ROWS, l4_deployment, write_lambda

from launcher import lifecycle
from launcher.cli import cli
from launcher.errors import InterruptedLaunch, SkyError, UnknownDeploymentError
from launcher.node import render
from launcher.plan import catalog
from launcher.plan import offers as plan
from launcher.sky import skyapi, state


def cheapest_fitting_by_hand(rows, fits):
    """Independent of launcher.plan.offers: cheapest row whose (GPU, count) is in `fits`."""
    ok = [r for r in rows if (r[1], r[2]) in fits]
    return min(ok, key=lambda r: r[5])


def test_plan_first_row_is_the_cheapest_fitting_offer_and_follows_a_price_change(seeded):
    cat = catalog.load()
    fits_20b = {("A100", 1), ("H100", 1)}  # smallest fit per GPU; A10 is not a gptoss-sky GPU
    result = plan.build(cat, cat.model("20b"))
    expected = cheapest_fitting_by_hand(LAMBDA_ROWS, fits_20b)
    assert (result.offers[0].instance_type, result.offers[0].price_per_hour) == (expected[0], expected[5])
    assert result.offers[0].price_source == "skypilot catalog"
    # Make the H100 cheaper than the A100: the ranking follows the catalog, not a table in code.
    changed = [r if r[0] != "gpu_1x_h100_pcie" else (*r[:5], 0.99, r[6]) for r in LAMBDA_ROWS]
    write_lambda(seeded, changed)
    import importlib

    import sky.catalog.lambda_catalog as lc

    importlib.reload(lc)
    again = plan.build(cat, cat.model("20b"))
    assert again.offers[0].instance_type == "gpu_1x_h100_pcie"


def test_plan_cost_per_token_ranks_by_dollars_per_million_tokens(seeded):
    cat = catalog.load()
    result = plan.build(cat, cat.model("120b"), optimize="cost-per-token")
    per_token = [o.usd_per_million_output_tokens for o in result.offers]
    assert per_token == sorted(per_token)
    first = result.offers[0]
    assert first.usd_per_million_output_tokens == pytest.approx(
        first.price_per_hour / (first.est_output_tokens_per_s * 3600) * 1e6)


def test_real_optimizer_picks_the_cheapest_feasible_offer_of_the_any_gpu_task(seeded):
    cat = catalog.load()
    config = yaml.safe_load(render.render_text(cat, render.committed_deployments(cat)["tasks/20b-any.sky.yaml"]))
    best = skyapi.optimize(config)
    assert (best["instance_type"], best["cloud"]) == ("gpu_1x_a100_sxm4", "lambda")
    write_lambda(seeded, [r if r[0] != "gpu_1x_h100_pcie" else (*r[:5], 0.99, r[6]) for r in LAMBDA_ROWS])
    import importlib

    import sky.catalog.lambda_catalog as lc

    importlib.reload(lc)
    assert skyapi.optimize(config)["instance_type"] == "gpu_1x_h100_pcie"


def test_plan_json_is_only_json_with_the_documented_keys(seeded):
    result = CliRunner(mix_stderr=False).invoke(cli, ["plan", "20b", "--json"])
    assert result.exit_code == 0, result.output
    offers = json.loads(result.stdout)
    for key in ("gpu", "count", "cloud", "region", "instance_type", "price_per_hour", "spot", "max_concurrency",
                "est_output_tokens_per_s", "usd_per_million_output_tokens"):
        assert key in offers[0]


def test_plan_with_no_enabled_cloud_prices_every_catalog_cloud_and_says_so(sky_server):
    cat = catalog.load()
    result = plan.build(cat, cat.model("120b"), gpu_specs=[(cat.gpu("H100"), 1)])
    assert any("no cloud is enabled" in n and "sky check" in n for n in result.notes)
    assert any("bundled catalog snapshot of 2026-11" in n for n in result.notes)
    assert {o.cloud for o in result.offers} >= {"lambda", "runpod"}
    assert all(o.gpu == "H100" and o.count == 1 for o in result.offers)


def test_a_request_no_gpu_fits_says_why(seeded):
    result = CliRunner().invoke(cli, ["plan", "120b", "--gpu", "L4:2"])
    assert result.exit_code == 2
    assert "no GPU fits gpt-oss-120b" in result.output and "L4:2" in result.output


def test_up_sends_task_name_secret_and_autostop_across_the_seam(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    out = lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-t1", idle_minutes=45),
                           progress=lambda m: None, ready_timeout=10)
    kind, sent = sky.calls[0]
    assert kind == "launch" and sent["name"] == "gptoss-t1"
    key = state.read_key(out["key_path"])
    assert sent["secrets"] == {"VLLM_API_KEY": key} and len(key) >= 32
    assert "VLLM_API_KEY" not in sent["envs"] and key not in json.dumps(sent["config"])
    assert {k: v.get_secret_value() for k, v in sent["task"].secrets.items()} == {"VLLM_API_KEY": key}
    assert sent["envs"] == {"GPTOSS_IDLE_MINUTES": "45"} and sent["idle_minutes"] == 1 and sent["down"] is True
    assert stat.S_IMODE(os.stat(out["key_path"]).st_mode) == 0o600
    assert out["endpoint"] == f"http://{openai_ok}"
    assert state.load("gptoss-t1").state == "up"


def test_serve_sends_replica_policy_and_scale_updates_it(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    d = l4_deployment(cat, "gptoss-s1", service=True, min_replicas=1, max_replicas=3, target_qps=2.0, spot=True,
                ondemand_fallback=True)
    lifecycle.launch(cat, sky, cat.model("20b"), d, progress=lambda m: None, ready_timeout=10)
    sent = sky.calls[0][1]
    spec = sent["task"].service
    assert (spec.min_replicas, spec.max_replicas, spec.target_qps_per_replica) == (1, 3, 2.0)
    assert spec.dynamic_ondemand_fallback is True
    assert sent["config"]["resources"]["use_spot"] is True
    lifecycle.scale(sky, "gptoss-s1", replicas=5, min_replicas=None, max_replicas=None, target_qps=None)
    update = sky.calls[-1][1]
    assert update["task"].service.min_replicas == 5 and update["task"].service.max_replicas == 5
    assert update["task"].service.dynamic_ondemand_fallback is True  # scaling keeps the spot fallback


def test_failed_launch_keeps_a_record_and_says_how_to_remove_it(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok, fail_launch=SkyError("launching gptoss-f1: no capacity"))
    with pytest.raises(SkyError) as info:
        lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-f1"), progress=lambda m: None)
    assert "gptoss-sky down gptoss-f1" in str(info.value)
    assert state.load("gptoss-f1").state == "failed"
    targets, _ = lifecycle.recorded_targets(sky)
    assert ("gptoss-f1", "cluster") in targets


def test_interrupted_launch_is_reported_too(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok, fail_launch=KeyboardInterrupt())
    with pytest.raises(InterruptedLaunch, match="interrupted.*gptoss-sky down gptoss-i1") as info:
        lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-i1"), progress=lambda m: None)
    assert info.value.exit_code == 130


def test_existing_name_is_refused_and_nothing_is_touched(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    sky.add_cluster("gptoss-mine")
    with pytest.raises(Exception, match="will not touch it"):
        lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-mine"), progress=lambda m: None)
    assert sky.calls == []


def test_down_unknown_name_is_an_error_and_touches_nothing(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-keep"), progress=lambda m: None,
                     ready_timeout=10)
    with pytest.raises(UnknownDeploymentError):
        lifecycle.named_target(sky, "gptoss-nope")
    with pytest.raises(UnknownDeploymentError, match="not launched by gptoss-sky"):
        lifecycle.named_target(sky, "prod-db")
    assert not any(c[0] == "down" for c in sky.calls) and state.exists("gptoss-keep")


def test_status_keeps_records_whose_cluster_skypilot_does_not_list(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-gone"), progress=lambda m: None,
                     ready_timeout=10)
    sky.raw_clusters.clear()  # torn down behind our back, or this client points at another API server
    rows = lifecycle.status(sky)
    assert rows[0]["state"] == "not found" and state.exists("gptoss-gone")
    assert os.path.isfile(state.load("gptoss-gone").key_path)  # only `down`/`forget` remove the key


def test_corrupt_record_never_breaks_status(openai_ok):
    state.home().joinpath("deployments").mkdir(parents=True, exist_ok=True)
    state.home().joinpath("deployments", "gptoss-bad.json").write_text("{not json")
    rows = lifecycle.status(FakeSky(openai_ok))
    assert [(r["name"], r["state"]) for r in rows] == [("gptoss-bad", "unreadable record")]


def test_concurrent_saves_never_corrupt_records():
    import threading

    def writer(i):
        for j in range(20):
            state.save(state.Record(name=f"gptoss-c{i}", kind="cluster", model="m", served_model="m",
                                    key_path="/nonexistent", created=j))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(r.name for r in state.all_records()) == [f"gptoss-c{i}" for i in range(4)]


def test_endpoint_is_normalized():
    assert lifecycle.normalize_endpoint("1.2.3.4:8000") == "http://1.2.3.4:8000"
    assert lifecycle.normalize_endpoint("https://x.example:443/") == "https://x.example:443"


def test_up_dryrun_prints_valid_yaml_and_launches_nothing(seeded):
    result = CliRunner(mix_stderr=False).invoke(cli, ["up", "20b", "--dryrun", "-y"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(result.stdout)
    skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})
    assert config["name"] == "gptoss-20b" and config["envs"]["GPTOSS_IDLE_MINUTES"] == "60"
    assert not state.all_records() and not list(state.home().glob("keys/*"))


def test_serve_dryrun_three_replicas(seeded):
    result = CliRunner(mix_stderr=False).invoke(cli, ["serve", "120b", "--replicas", "3", "--dryrun", "-y"])
    assert result.exit_code == 0, result.output
    task = skyapi.task_from_config(yaml.safe_load(result.stdout), secrets={"VLLM_API_KEY": "k"})
    assert task.service.min_replicas == 3 and task.service.readiness_path == "/v1/chat/completions"


@pytest.mark.parametrize("args, needle", [
    (["serve", "20b", "--replicas", "2", "--min-replicas", "1", "--max-replicas", "3", "--dryrun"], "not both"),
    (["serve", "20b", "--ondemand-fallback", "--dryrun"], "only applies with --spot"),
    (["up", "20b", "--name", "Bad_Name", "--dryrun"], "invalid name"),
    (["down"], "give NAME... or --all"),
    (["plan", "20b", "--clouds", "mars"], "unknown cloud(s) mars"),
])
def test_lifecycle_bad_input_is_one_line_exit_2(seeded, args, needle):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_up_end_to_end_through_the_cli_waits_smokes_and_never_prints_the_key(seeded, server, monkeypatch):
    """plan -> render -> launch (fake seam) -> wait -> smoke against a real local vLLM-like server."""
    from openai_server import API_KEY

    fake = FakeSky(server.url.removeprefix("http://"))
    monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: fake)
    monkeypatch.setattr(state.secrets, "token_urlsafe", lambda n: API_KEY)  # the fake server's key
    result = CliRunner(mix_stderr=False).invoke(cli, ["up", "20b", "-y", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    doc = json.loads(result.stdout)
    assert doc["endpoint"] == server.url and doc["smoke"]["ok"] is True
    assert API_KEY not in result.stdout and API_KEY not in result.stderr
    launched = fake.calls[0][1]
    assert launched["name"] == "gptoss-20b" and launched["config"]["envs"]["GPTOSS_IDLE_MINUTES"] == "60"
    status = CliRunner(mix_stderr=False).invoke(cli, ["status", "--json"])
    assert json.loads(status.stdout)[0]["name"] == "gptoss-20b"
    down = CliRunner(mix_stderr=False).invoke(cli, ["down", "20b", "-y"])
    assert down.exit_code == 0 and ("down", "gptoss-20b") in fake.calls and not state.exists("gptoss-20b")


def test_up_with_no_enabled_cloud_names_sky_check_and_launches_nothing(sky_server, monkeypatch):
    calls = []
    monkeypatch.setattr(skyapi, "SkyPilotClient", lambda: calls.append("client") or FakeSky())
    result = CliRunner(mix_stderr=False).invoke(cli, ["up", "20b", "-y", "--gpu", "H100"])
    assert result.exit_code == 2
    assert "run `sky check`" in result.stderr and "Traceback" not in result.stderr
    assert calls == [] and not state.all_records()


def test_status_joins_records_with_live_services_and_lists_unrecorded_gptoss_clusters(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-svc", service=True, replicas=2),
                     progress=lambda m: None, ready_timeout=10)
    sky.service_scripts["gptoss-svc"] = Script([("READY", [(1, "READY"), (2, "STARTING")])])
    sky.add_cluster("gptoss-stray")
    sky.add_cluster("someone-elses")
    rows = {r["name"]: r for r in lifecycle.status(sky)}
    assert rows["gptoss-svc"]["state"] == "READY" and len(rows["gptoss-svc"]["replicas"]) == 2
    assert rows["gptoss-svc"]["endpoint"] == f"http://{openai_ok}"
    assert "no local record" in rows["gptoss-stray"]["state"]
    assert "someone-elses" not in rows


def test_connection_for_a_cluster_carries_the_live_price_for_bench(openai_ok):
    cat = catalog.load()
    sky = FakeSky(openai_ok)
    lifecycle.launch(cat, sky, cat.model("20b"), l4_deployment(cat, "gptoss-priced"), progress=lambda m: None,
                     ready_timeout=10)
    sky.add_cluster("gptoss-priced", price_per_hour=1.29)  # what SkyPilot launched
    conn = lifecycle.connection_for("priced", client=sky)
    assert conn.price_per_hour == 1.29 and conn.base_url == f"http://{openai_ok}"
    assert conn.api_key == state.read_key(state.load("gptoss-priced").key_path)


def test_plan_table_is_the_result_on_stdout(seeded):
    result = CliRunner(mix_stderr=False).invoke(cli, ["plan", "20b"])
    assert result.exit_code == 0
    assert "A100:1" in result.stdout and "$1.29" in result.stdout and "Shown" in result.stderr
    wide = json.loads(CliRunner(mix_stderr=False).invoke(cli, ["plan", "20b", "--json"]).stdout)
    assert wide[0]["instance_type"] == "gpu_1x_a100_sxm4"  # instance types: --json (or a wide terminal)
