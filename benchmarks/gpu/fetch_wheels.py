"""The wheels bench_gpu.py needs on the lent GPU machine, fetched here into benchmarks/gpu/wheels/ (git-ignored).

    python benchmarks/gpu/fetch_wheels.py

That machine has Python 3.12, torch 2.11 (CUDA 13.0), accelerate 1.15, huggingface_hub 1.33, tokenizers 0.23.2,
safetensors, pyarrow, pandas, xxhash and an older transformers and peft, and no package index. What is carried
is what it lacks or has in another version than requirements.txt pins: about 20 MB, well inside the 64 MiB that
travel with the working tree. bitsandbytes is trimmed to its CUDA 13.0 library (the wheel holds one per CUDA
and ROCm version, 43 MB in all).
"""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(__file__).resolve().parent / "wheels"
CARRIED = ["transformers", "peft", "trl", "datasets", "bitsandbytes"]
EXTRA = ["dill==0.4.1", "multiprocess==0.70.19", "fsspec==2026.9.0",   # datasets' own pins
         "liger-kernel==0.8.5"]   # bench_gpu.py --kernels only (Triton comes with the machine's CUDA torch)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
KEEP = re.compile(r"libbitsandbytes_(cuda130|cpu)\.so$")


def pins() -> list[str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if m := re.match(r"([A-Za-z0-9_.-]+)==([^\s#]+)", line):
            found[m.group(1).lower()] = m.group(0)
    return [found[name] for name in CARRIED] + EXTRA


def trim(wheel: Path) -> None:
    """The same wheel less the other CUDA and ROCm builds of the library (RECORD lists only what stays)."""
    trimmed = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as dst:
        dropped = {i.filename for i in src.infolist() if "libbitsandbytes_" in i.filename and not KEEP.search(i.filename)}
        for item in src.infolist():
            if item.filename in dropped:
                continue
            data = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if line.split(b",")[0].decode() not in dropped)
            dst.writestr(item, data)
    trimmed.replace(wheel)


def main() -> None:
    WHEELS.mkdir(exist_ok=True)
    platforms = [x for p in PLATFORMS for x in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *platforms, "-d", str(WHEELS), *pins()], check=True)
    for wheel in WHEELS.glob("bitsandbytes-*.whl"):
        trim(wheel)
    total = sum(w.stat().st_size for w in WHEELS.glob("*.whl"))
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {WHEELS}")


if __name__ == "__main__":
    main()
