"""A dry run says what it checked and what it cannot check without launching, and never calls an input
"valid" it did not check: a region or zone the cloud's catalog lacks is refused (SkyPilot's own validator
over the bundled catalog snapshot, which SkyPilot reads here: no cloud, no cached catalog), a Kubernetes
context the real local API server has not enabled is refused, and a bucket is said to be unchecked.
"""

from __future__ import annotations

import json

import pytest
import skyserver
from clitools import invoke


@pytest.mark.parametrize("command", [["up", "20b", "--dryrun", "-y"], ["serve", "20b", "--dryrun", "-y"],
                                     ["plan", "20b"]])
@pytest.mark.parametrize("infra, says, allowed", [
    ("aws/us-nowhere-1", "Invalid region 'us-nowhere-1'", "Did you mean one of these"),
    ("lambda/nowhere", "Invalid region 'nowhere'", "List of supported lambda regions: 'asia-northeast-1"),
    ("gcp/us-central1/us-central1-z", "Invalid zone 'us-central1-z' for region 'us-central1'", "us-central1-a"),
])
def test_a_region_or_zone_the_catalog_lacks_is_one_line_naming_what_is_allowed(command, infra, says, allowed):
    result = invoke(*command, "--infra", infra)
    assert result.exit_code == 2, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"--infra {infra}" in error[0], result.stderr
    assert says in error[0] and allowed in error[0] and "no offer" not in result.stderr
    assert result.stdout == ""


def test_a_dry_run_says_what_it_checked_and_what_not_and_never_valid():
    result = invoke("up", "20b", "--dryrun", "-y", "--infra", "gcp/us-central1/us-central1-a", "--cache", "gs://b/x")
    assert result.exit_code == 0, result.stderr
    assert "valid" not in result.stderr.lower().replace("invalid", "")
    line = next(line for line in result.stderr.splitlines() if line.startswith("Dry run: nothing launched."))
    assert "gcp region us-central1 is in the bundled catalog snapshot" in line and "zone us-central1-a" in line
    assert "Not checked in a dry run:" in line and "whether gs://b/x exists" in line
    doc = json.loads(invoke("serve", "20b", "--dryrun", "-y", "--json", "--infra", "aws/us-east-1/us-east-1a").stdout)
    assert "aws region us-east-1 is in the bundled catalog snapshot" in doc["checked"]
    assert any("zone us-east-1a" in item and "per account" in item for item in doc["not_checked"])  # zone ids


def test_a_kubernetes_context_is_checked_against_the_api_servers_enabled_contexts(sky_server):
    skyserver.set_enabled_clouds(sky_server, ["kubernetes"])  # its kubeconfig's one context: gptoss-fake-ctx
    try:
        missing = invoke("up", "20b", "--dryrun", "-y", "--infra", "kubernetes/nosuch")
        known = invoke("up", "20b", "--dryrun", "-y", "--json", "--infra", "kubernetes/gptoss-fake-ctx")
    finally:
        skyserver.set_enabled_clouds(sky_server, [])
    assert missing.exit_code == 2, missing.stderr
    error = [line for line in missing.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "no enabled Kubernetes context nosuch" in error[0]
    assert "enabled: kubernetes/gptoss-fake-ctx" in error[0] and "sky check kubernetes" in error[0]
    assert known.exit_code == 0, known.stderr
    doc = json.loads(known.stdout)
    assert "Kubernetes context gptoss-fake-ctx is enabled on the API server" in doc["checked"]
    assert "whether Kubernetes context gptoss-fake-ctx answers" in doc["not_checked"]


def test_without_an_api_server_the_context_is_said_to_be_unchecked():
    result = invoke("up", "20b", "--dryrun", "-y", "--json", "--infra", "kubernetes/some-ctx")
    assert result.exit_code == 0, result.stderr
    assert any("Kubernetes context some-ctx" in item for item in json.loads(result.stdout)["not_checked"])
