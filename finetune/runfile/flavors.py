"""The machines Hugging Face Jobs rents (`runner: {hf_jobs: {flavor: ...}}`): what each is called, its GPU, the
memory one GPU has (what the memory verdict compares with: a run trains on one device each) and its price.

Prices are the list prices of Hugging Face's hardware table (docs: "Using GPU Spaces", the same machines bill
Jobs by the minute); a flavour whose price that table does not give has None, and the page then says "see
the Hub". Where the Hub can be reached, `GET /api/jobs/hardware` (`HfApi.list_jobs_hardware`) is the
authority and its prices replace these on the page (finetune/jobs/hf_jobs.live_prices, ui/runner_view.py).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Flavor:
    name: str                   # what run_job(flavor=...) takes
    label: str                  # for people: the GPU and its memory as sold
    gpus: int                   # 0: a CPU machine
    gpu_memory: int             # bytes of one GPU (nvidia-smi's total); 0 without a GPU
    bf16: bool                  # the GPU computes in bfloat16 (T4: float16 only)
    usd_per_hour: float | None  # list price; None: not in the table


def _gpu(name, label, gpus, mib, bf16, price) -> Flavor:
    return Flavor(name, label, gpus, mib * MIB, bf16, price)


# One GPU's memory as the driver reports it (MiB), as finetune/model/fit.py's GPUS list.
FLAVORS = {f.name: f for f in [
    Flavor("cpu-basic", "CPU basic (2 vCPU, 16 GB)", 0, 0, False, 0.01),
    Flavor("cpu-upgrade", "CPU upgrade (8 vCPU, 32 GB)", 0, 0, False, 0.03),
    _gpu("t4-small", "Nvidia T4 16 GB (small)", 1, 15_360, False, 0.40),
    _gpu("t4-medium", "Nvidia T4 16 GB (medium)", 1, 15_360, False, 0.60),
    _gpu("l4x1", "Nvidia L4 24 GB", 1, 23_034, True, 0.80),
    _gpu("l4x4", "4x Nvidia L4 24 GB", 4, 23_034, True, 3.80),
    _gpu("a10g-small", "Nvidia A10G 24 GB (small)", 1, 23_028, True, 1.00),
    _gpu("a10g-large", "Nvidia A10G 24 GB (large)", 1, 23_028, True, 1.50),
    _gpu("a10g-largex2", "2x Nvidia A10G 24 GB", 2, 23_028, True, 3.00),
    _gpu("a10g-largex4", "4x Nvidia A10G 24 GB", 4, 23_028, True, 5.00),
    _gpu("l40sx1", "Nvidia L40S 48 GB", 1, 46_068, True, 1.80),
    _gpu("l40sx4", "4x Nvidia L40S 48 GB", 4, 46_068, True, 8.30),
    _gpu("l40sx8", "8x Nvidia L40S 48 GB", 8, 46_068, True, 23.50),
    _gpu("a100-large", "Nvidia A100 80 GB", 1, 81_920, True, 2.50),
    _gpu("h200", "Nvidia H200 141 GB", 1, 143_771, True, None),
    _gpu("h200x2", "2x Nvidia H200 141 GB", 2, 143_771, True, None),
    _gpu("h200x4", "4x Nvidia H200 141 GB", 4, 143_771, True, None),
    _gpu("h200x8", "8x Nvidia H200 141 GB", 8, 143_771, True, None),
]}
DEFAULT_FLAVOR = "a10g-small"


def cost_usd(flavor: Flavor, seconds: float) -> float | None:
    """What `seconds` on `flavor` costs at its list price (Jobs bill by the minute, so whole minutes)."""
    if flavor.usd_per_hour is None:
        return None
    minutes = max(1, -(-int(seconds) // 60))
    return flavor.usd_per_hour * minutes / 60
