"""What a lifecycle test starts from: a handful of real Lambda rows (from the bundled snapshot) written
where SkyPilot reads its catalogs (this test's $SKY_RUNTIME_DIR/.sky/catalogs/v8, see conftest's
skypilot_catalog_folder), and the small deployment a test launches."""

from __future__ import annotations

import csv
from pathlib import Path

from launcher import lifecycle
from launcher.node import render

SNAPSHOT = Path(__file__).resolve().parent.parent / "catalogs" / "prices" / "v8"
LAMBDA_COLUMNS = ["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price",
                  "Region", "GpuInfo", "SpotPrice"]
# A handful of real Lambda rows (from the snapshot), enough for 20b and 120b.
LAMBDA_ROWS = [
    ("gpu_1x_a10", "A10", 1, 30, 200, 0.75, "us-east-1"),
    ("gpu_1x_a100_sxm4", "A100", 1, 30, 200, 1.29, "us-east-1"),
    ("gpu_1x_h100_pcie", "H100", 1, 26, 200, 2.49, "us-east-1"),
    ("gpu_2x_h100_sxm5", "H100", 2, 52, 450, 6.38, "us-east-1"),
    ("gpu_8x_a100_80gb_sxm4", "A100-80GB", 8, 240, 1800, 14.32, "us-east-1"),
]


def write_lambda(runtime: Path, rows) -> None:
    """SkyPilot's Lambda catalog (vms.csv) under `runtime` with these rows."""
    folder = runtime / ".sky" / "catalogs" / "v8" / "lambda"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "vms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LAMBDA_COLUMNS)
        for it, acc, n, cpu, mem, price, region in rows:
            mib = {"A10": 24576, "A100": 40960, "H100": 81920, "A100-80GB": 81920}[acc]
            info = (f"{{'Gpus': [{{'Name': '{acc}', 'Manufacturer': 'NVIDIA', 'Count': {float(n)}, "
                    f"'MemoryInfo': {{'SizeInMiB': {mib}}}}}], 'TotalGpuMemoryInMiB': {mib}}}")
            w.writerow([it, acc, float(n), cpu, mem, price, region, info, ""])


def seed_lambda(runtime: Path) -> None:
    """LAMBDA_ROWS and SkyPilot's accelerator-name table where SkyPilot reads them."""
    write_lambda(runtime, LAMBDA_ROWS)
    common = runtime / ".sky" / "catalogs" / "v8" / "common"
    common.mkdir(parents=True, exist_ok=True)
    (common / "accelerators.csv").write_text((SNAPSHOT / "common" / "accelerators.csv").read_text())


def l4_deployment(cat, name: str, service: bool = False, **kw) -> render.Deployment:
    """gpt-oss-20b on one L4, as `up` (or `serve`) would launch it under `name`."""
    recipes = (render.recipes_mod.build(cat, cat.model("20b"), cat.gpu("L4"), 1),)
    return lifecycle.deployment_for(name, recipes, service=service, **kw)
