"""Regenerate the shipped VexiiRiscv-MiCo latency-proxy parameters.

    python bench/fit_vexii.py [--profiles DIR] [--out DIR]

Fits every registered proxy (bops, cbops, cbops+shape) for each CPU
configuration (small, high, cacheless) and each kind of profile (matmul,
linear, conv2d, pool), and writes micoc/cost/params/vexii_<config>_<kind>.json
with the provenance (file names and sha256) of the CSVs used. The profiles
themselves stay in ../shared/profiles; only coefficients are shipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from micoc.cost.profiles import read_profiles  # noqa: E402
from micoc.cost.proxies import PARAMS_DIR, PROXIES, fit_proxy, save_bundle  # noqa: E402

CONFIGS: tuple[str, ...] = ("small", "high", "cacheless")
KINDS: tuple[str, ...] = ("matmul", "linear", "conv2d", "pool")


def default_profiles_dir() -> Path:
    env = os.environ.get("MICOC_PROFILES")
    return Path(env) if env else REPO.parent / "shared" / "profiles"


def vexii_files(profiles: Path, config: str, kind: str, *, ship: bool = True) -> list[Path]:
    """The profile CSVs of one configuration and kind.

    With ship=True, conv2d of `high` also uses the `_larger` grid: the
    shipped fit should see the biggest layers measured (cross-validation and
    the extrapolation check keep the two files apart).
    """
    if kind == "matmul":
        return [profiles / f"mico_{config}.csv"]
    if kind == "linear":
        return [profiles / f"mico_{config}_bitlinear_test.csv"]
    if kind == "conv2d":
        files = [profiles / f"mico_{config}_bitconv2d_test.csv"]
        larger = profiles / f"mico_{config}_bitconv2d_test_larger.csv"
        if ship and larger.exists():
            files.append(larger)
        return files
    if kind == "pool":
        return [
            profiles / f"mico_{config}_avgpool4d_f32_test.csv",
            profiles / f"mico_{config}_maxpool4d_f32_test.csv",
        ]
    raise ValueError(f"unknown kind {kind!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=Path, default=default_profiles_dir())
    ap.add_argument("--out", type=Path, default=PARAMS_DIR)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for config in CONFIGS:
        for kind in KINDS:
            files = vexii_files(args.profiles, config, kind)
            profile = read_profiles(files, kind)
            fitted = [fit_proxy(kind, name, files, profile=profile) for name in PROXIES]
            path = args.out / f"vexii_{config}_{kind}.json"
            save_bundle(path, fitted, target="vexii", config=config)
            best = fitted[-1]
            m = best.provenance["fit_metrics"]
            print(
                f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
                f"{len(profile)} rows, {best.name} in-sample R^2 {m['r2']:.4f} "
                f"MAPE {m['mape']:.2f}% hyper {best.params['hyper']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
