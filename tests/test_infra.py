"""Every infra SkyPilot launches on: unpriced infra (Kubernetes, SSH node pools, clouds with no price list) is
planned, shown with the price unknown and why, ranked after priced offers unless pinned with --infra, and the
task's accelerator set goes to SkyPilot's optimizer, which decides.

Kubernetes is enabled the way SkyPilot's own tests enable clouds (the cached enabled-cloud list), with a real
kubeconfig file naming a context; the only fake is the cluster's API server (a real HTTP server on 127.0.0.1 that
answers which nodes and GPUs it has), read by the real Kubernetes client.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from clitools import invoke

from launcher.plan import catalog
from launcher.plan import offers as plan
from launcher.sky import skyapi

CONTEXT = "gpu-ctx"


class FakeKubeAPI:
    """What a live Kubernetes API server answers SkyPilot's optimizer: one ready node with one L4 GPU.

    A real HTTP server on 127.0.0.1 read by the real Kubernetes client; it records the paths asked.
    """

    NODE = {
        "metadata": {"name": "gpu-node-1", "labels": {"skypilot.co/accelerator": "l4",
                                                      "kubernetes.io/hostname": "gpu-node-1"}},
        "status": {"capacity": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
                   "allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1"},
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
    }

    def __init__(self):
        import http.server
        import threading

        paths = self.paths = []
        node = self.NODE

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                route = self.path.split("?")[0]
                if route == "/api/v1/nodes":
                    body, code = {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [node]}, 200
                elif route.endswith("/pods"):
                    body, code = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}, 200
                else:
                    body, code = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                  "reason": "NotFound"}, 404
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def kubeconfig(server: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: test-cluster
  cluster: {{server: "{server}"}}
users:
- name: test-user
  user: {{token: fake-token-for-tests}}
contexts:
- name: {CONTEXT}
  context: {{cluster: test-cluster, user: test-user}}
current-context: {CONTEXT}
"""


@pytest.fixture
def only_kubernetes(isolated_env, monkeypatch):
    """Kubernetes is the one enabled infra; its cluster (context gpu-ctx) answers with one L4 node."""
    import sky
    from sky import check as sky_check

    api = FakeKubeAPI()
    kube = isolated_env / ".kube"
    kube.mkdir()
    (kube / "config").write_text(kubeconfig(api.url))
    monkeypatch.setenv("KUBECONFIG", str(kube / "config"))
    folder = isolated_env / ".sky" / "catalogs" / "v8" / "common"
    folder.mkdir(parents=True)
    shutil.copy(plan.snapshot_folder() / "common" / "accelerators.csv", folder / "accelerators.csv")  # SkyPilot's
    # Enabled for the in-process optimizer (SkyPilot's own test device) and at the seam plan asks.
    monkeypatch.setattr(sky_check, "get_cached_enabled_clouds_or_refresh", lambda *a, **k: [sky.clouds.Kubernetes()])
    monkeypatch.setattr(skyapi, "enabled_clouds", lambda: ["kubernetes"])
    yield api
    api.close()


def test_plan_lists_kubernetes_offers_with_the_price_unknown_and_why(only_kubernetes):
    result = invoke("plan", "20b")
    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert rows and all(row[1] == "kubernetes" and "unknown" in row for row in rows)
    assert "L4:1" in {row[0] for row in rows}
    assert "price unknown" in result.stderr and "kubernetes.pricing" in result.stderr
    offers = json.loads(invoke("plan", "20b", "--json").stdout)
    assert {o["cloud"] for o in offers} == {"kubernetes"}
    assert all(o["price_per_hour"] is None and o["usd_per_million_output_tokens"] is None for o in offers)
    assert all("Kubernetes has no price list" in o["price_note"] for o in offers)


def test_up_dryrun_renders_a_task_skypilots_optimizer_places_on_kubernetes(only_kubernetes):
    result = invoke("up", "20b", "--dryrun", "-y")
    assert result.exit_code == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    offered = config["resources"]["accelerators"]
    assert offered.get("L4") == 1 and len(offered) > 1  # the whole set goes to the optimizer
    best = skyapi.optimize(config)
    assert best["cloud"] == "kubernetes" and best["region"] == CONTEXT
    assert best["accelerator_name"] == "L4" and best["accelerator_count"] == 1
    assert any(path.startswith("/api/v1/nodes") for path in only_kubernetes.paths)  # it asked the cluster


def test_infra_kubernetes_context_is_pinned_shown_and_rendered(only_kubernetes):
    result = invoke("plan", "20b", "--infra", f"kubernetes/{CONTEXT}", "--json")
    assert result.exit_code == 0, result.stderr
    offers = json.loads(result.stdout)
    assert {(o["cloud"], o["region"]) for o in offers} == {("kubernetes", CONTEXT)}
    dry = invoke("up", "20b", "--infra", f"k8s/{CONTEXT}", "--dryrun", "-y")
    assert dry.exit_code == 0, dry.stderr
    config = yaml.safe_load(dry.stdout)
    assert config["resources"]["infra"] == f"k8s/{CONTEXT}"
    task = skyapi.task_from_config(config, secrets={"VLLM_API_KEY": "k"})
    assert {str(r.cloud).lower() for r in task.resources} == {"kubernetes"}
    assert {r.region for r in task.resources} == {CONTEXT}


def test_infra_ssh_pool_is_accepted_and_planned_unpriced(isolated_env, monkeypatch):
    from sky import check as sky_check

    monkeypatch.setattr(sky_check, "get_cached_enabled_clouds_or_refresh", lambda *a, **k: [])
    monkeypatch.setattr(skyapi, "enabled_clouds", lambda: [])
    result = invoke("plan", "20b", "--infra", "ssh/my-pool", "--json")
    assert result.exit_code == 0, result.stderr
    offers = json.loads(result.stdout)
    assert offers and {o["cloud"] for o in offers} == {"ssh"}
    assert all(o["price_per_hour"] is None and "SSH node pool" in o["price_note"] for o in offers)


def test_unpriced_infra_ranks_after_every_priced_offer(isolated_env):
    cat = catalog.load()
    result = plan.build(cat, cat.model("20b"), clouds=["kubernetes", "lambda", "azure"])
    priced = [o.price_per_hour is not None for o in result.offers]
    assert priced[0] and True in priced and False in priced
    assert priced == sorted(priced, reverse=True), "an unpriced offer came before a priced one"
    unpriced_clouds = {o.cloud for o in result.offers if o.price_per_hour is None}
    assert unpriced_clouds == {"kubernetes", "azure"}
    azure = next(o for o in result.offers if o.cloud == "azure")
    assert "no azure price list" in azure.price_note


def test_spot_leaves_out_infra_that_has_no_spot(isolated_env):
    cat = catalog.load()
    result = plan.build(cat, cat.model("20b"), clouds=["kubernetes", "ssh", "azure"], spot=True)
    assert {o.cloud for o in result.offers} == {"azure"}
