"""Pack what an offline GPU machine lacks to run `bench/gpu_packing.py`: wheels, a slim Ray, the SST-2 files.

GPU machines often come with a CUDA torch but no package index. This script, run where pip can reach
one, downloads the engine's run-time dependencies (optuna, ray[tune], datasets, sqlalchemy and what
they need), at the versions installed here (the ones the tests ran with), for the target's Python,
leaving out what the target already has (`--have`, the output of `python3 -m pip list --format=freeze`
there, or one name per line). Ray's wheel is about 76 MiB; the parts a search does not use (the Java
jars, the dashboard's web client, RLlib) are left out and the rest goes into an xz tarball of about
28 MiB, so the whole bundle fits a small upload.

    python bench/gpu_bundle.py --out .gpu_bundle --have have.txt [--python-version 3.12]

Then on the GPU machine, from the repository root (`install.sh` is written into the bundle):

    sh .gpu_bundle/install.sh /tmp/site && PYTHONPATH=/tmp/site python3 bench/gpu_packing.py --data-root .gpu_bundle/data
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import DEFAULT_DATA_ROOT, require_sst2, sst2_subset  # noqa: E402

# What a search imports beyond torch (plotly, seqeval, the dashboard and psycopg are for reports, NER and
# PostgreSQL, which gpu_packing.py does not use).
ROOTS = ("optuna", "ray[tune]", "datasets", "sqlalchemy", "pyyaml")
NEVER = {"torch"}  # the target's own CUDA build stays
# Parts of Ray's wheel a local search never loads: Java workers, the dashboard's web client, RLlib.
RAY_UNUSED = ("ray/jars/", "ray/dashboard/client/build/", "ray/rllib/")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

INSTALL_SH = """#!/bin/sh
# Installs this bundle into a folder for PYTHONPATH: sh install.sh /tmp/site
set -e
here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: sh install.sh TARGET_DIR}
mkdir -p "$target"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$target" "$here"/wheels/*.whl
if [ -f "$here/ray-slim.tar.xz" ]; then
    python3 - "$here/ray-slim.tar.xz" "$target" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as archive:
    archive.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
EOF
fi
echo "installed into $target: export PYTHONPATH=$target"
"""


def read_have(path: Path | None) -> set[str]:
    """Distribution names already on the target (`pip list --format=freeze` output or one name per line)."""
    if path is None:
        return set()
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(canonicalize_name(line.split("==")[0].split(" @ ")[0].strip()))
    return names


def requirement_closure(roots: tuple[str, ...], python_version: str) -> dict[str, str]:
    """{distribution: version installed here} for `roots` and everything they require on `python_version`."""
    environment = {"python_version": python_version, "python_full_version": f"{python_version}.0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    found: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [Requirement(root) for root in roots]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in visited or name in NEVER:
            continue
        visited.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"error: {requirement.name} is required (via {', '.join(roots)}) but not installed here; "
                             "run this script with the project's environment (.venv/bin/python)") from None
        found[name] = dist.version
        for line in dist.requires or []:
            needed = Requirement(line)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({**environment, "extra": extra}) for extra in extras):
                needed.marker = None
                pending.append(needed)
    return found


def download(pins: dict[str, str], python_version: str, wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--dest", str(wheels)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += [f"{name}=={version}" for name, version in sorted(pins.items())]
    subprocess.run(command, check=True)


def slim_ray(wheel: Path, out: Path) -> int:
    """Writes Ray's wheel without the unused parts as `out` (xz tarball of the installed tree); returns files kept."""
    kept = 0
    with zipfile.ZipFile(wheel) as source, tempfile.TemporaryDirectory() as scratch:
        for info in source.infolist():
            if not info.filename.startswith(RAY_UNUSED):
                extracted = Path(source.extract(info, scratch))
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    extracted.chmod(mode)
                kept += 1
        with tarfile.open(out, "w:xz", preset=6 | lzma.PRESET_EXTREME) as archive:
            for child in sorted(Path(scratch).iterdir()):
                archive.add(child, arcname=child.name)
    return kept


def is_replaceable(out: Path) -> bool:
    """Whether `--out` may be emptied: absent, an empty folder, or a bundle this script wrote."""
    if not out.exists():
        return True
    return out.is_dir() and (not any(out.iterdir()) or (out / "install.sh").is_file() and (out / "wheels").is_dir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".gpu_bundle", help="bundle folder: new, empty, or an earlier bundle (replaced)")
    parser.add_argument("--have", type=Path, help="the target's `pip list --format=freeze` (or one name per line): left out")
    parser.add_argument("--python-version", default="3.12", help="the target's Python, major.minor")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding sentence/sst2/, copied in")
    args = parser.parse_args(argv)
    if not is_replaceable(args.out):
        parser.error(f"--out {args.out}: not empty and not a bundle (no install.sh); pass a new or empty folder")
    if args.have is not None and not args.have.is_file():
        parser.error(f"--have {args.have}: no such file")
    require_sst2(args.data_root)

    have = read_have(args.have)
    pins = {name: version for name, version in requirement_closure(ROOTS, args.python_version).items() if name not in have}
    print(f"bundling {len(pins)} distributions for Python {args.python_version}: "
          + ", ".join(f"{name} {version}" for name, version in sorted(pins.items())), flush=True)
    if args.out.exists():
        shutil.rmtree(args.out)
    wheels = args.out / "wheels"
    download(pins, args.python_version, wheels)
    for wheel in wheels.glob("ray-*.whl"):
        print(f"slimming {wheel.name} ({wheel.stat().st_size / 2**20:.1f} MiB) ...", flush=True)
        kept = slim_ray(wheel, args.out / "ray-slim.tar.xz")
        wheel.unlink()
        print(f"  ray-slim.tar.xz: {kept} files, {(args.out / 'ray-slim.tar.xz').stat().st_size / 2**20:.1f} MiB")
    sst2_subset(args.data_root, args.out / "data", train_sentences=None)
    (args.out / "install.sh").write_text(INSTALL_SH)
    total = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"bundle: {args.out} ({total / 2**20:.1f} MiB); on the target: sh {args.out.name}/install.sh /tmp/site")
    return 0


if __name__ == "__main__":
    sys.exit(main())
