"""`micoc profile run`: profiling micoc's own runtime kernels (host wall time, rv32
instructions), the CSVs it writes, the fitted bundles and the host/rv32 cost models."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from micoc.cli import main
from micoc.cost.model import RuntimeLatency, make_model
from micoc.cost.profile_run import measure, profile_run
from micoc.cost.profiles import read_profile
from micoc.cost.proxies import PARAMS_DIR, load_bundle
from micoc.errors import InputError, ToolchainError
from micoc.ir import Graph, GraphBuilder, f32
from micoc.ir.printer import save_mir
from micoc.targets import rv32 as rv32_pkg

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")
needs_rv32 = pytest.mark.skipif(not rv32_pkg.available(), reason=f"rv32 toolchain missing ({rv32_pkg.APT_HINT})")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def small_net() -> Graph:
    b = GraphBuilder("small")
    x = b.input("x", f32(1, 8, 8, 8))
    y = b.op("conv2d", [x, b.const("c1.w", _w(16, 8, 3, 3))], {"pad": [1, 1, 1, 1], "act": "relu"}, layer="c1")
    y = b.op("conv2d", [y, b.const("c2.w", _w(16, 16, 3, 3))], {"stride": [2, 2], "act": "relu"}, layer="c2")
    y = b.op("global_avgpool", [y])
    y = b.op("reshape", [y], {"shape": [1, 16]})
    y = b.op("linear", [y, b.const("fc.w", _w(10, 16))], layer="fc")
    b.output(y)
    return b.graph


@pytest.fixture(scope="module")
def host_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler")
    out = tmp_path_factory.mktemp("host_profile")
    profile_run("host", out, grid="tiny", repeats=3)
    return out


@needs_cc
def test_host_profile_csvs_read_back(host_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for kind, header in (("linear", "N,M,K,QA,QW,Time"), ("conv2d", "H,W,C,K,KS,S,QA,QW,Time")):
        path = host_run / f"host_{kind}.csv"
        assert path.read_text().splitlines()[0] == header
        prof = read_profile(path, kind)
        assert len(prof) == 2 * 16  # tiny grid: two shapes x 16 bit pairs
        assert set(zip(prof.columns["QW"], prof.columns["QA"], strict=True)) == {
            (float(w), float(a)) for w in (1, 2, 4, 8) for a in (1, 2, 4, 8)
        }
        assert (prof.time >= 1).all()
        rc, out, err = run_cli(capsys, "profile", "check", "--target", "host", "--kind", kind, "--csv", path,
                               "--params", host_run / "params", "--json")
        assert rc == 0, err
        res = json.loads(out)
        assert res["rows"] == 32 and res["model"].startswith("host micoc-rt")


@needs_cc
def test_host_bundle_provenance_and_model(host_run: Path, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    pdir = host_run / "params"
    for kind in ("linear", "conv2d"):
        doc = json.loads((pdir / f"host_{kind}.json").read_text())
        assert doc["target"] == "host" and doc["unit"] == "ns" and doc["default"] == "micoc-rt"
        prov = doc["provenance"]
        assert {"machine", "date", "command", "grid"} <= set(prov)
        assert prov["grid"]["name"] == "tiny"
        assert set(load_bundle(pdir / f"host_{kind}.json")) == {"micoc-rt", "bops", "cbops", "cbops+shape"}
    g = small_net()
    model = make_model("host", g, params=pdir)
    assert isinstance(model, RuntimeLatency) and model.unit == "ns"
    lo, hi = model.predict(default=(1, 1)), model.predict(default=(8, 8))
    assert 0 < lo and 0 < hi
    batch = model.predict_batch(np.full((3, 3, 2), 4))
    assert np.allclose(batch, model.predict(default=(4, 4)))
    # the CLI, with the parameters given or found in MICOC_PARAMS_DIR
    save_mir(g, tmp_path / "small.mir")
    rc, out, err = run_cli(capsys, "estimate", tmp_path / "small.mir", "--target", "host", "--params", pdir,
                           "--bits", "w4a4", "--json")
    assert rc == 0, err
    assert json.loads(out)["unit"] == "ns"


def test_host_without_params_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MICOC_PARAMS_DIR", str(tmp_path / "none"))
    with pytest.raises(InputError, match="micoc profile run --target host"):
        make_model("host", small_net())
    save_mir(small_net(), tmp_path / "small.mir")
    rc, _, err = run_cli(capsys, "estimate", tmp_path / "small.mir", "--target", "host")
    assert rc == 2 and "micoc profile run" in err


def test_rv32_shipped_params_load() -> None:
    for kind in ("linear", "conv2d"):
        bundle = load_bundle(PARAMS_DIR / f"rv32_{kind}.json")
        assert "micoc-rt" in bundle
    model = make_model("rv32", small_net())
    assert model.unit == "instructions"
    # fewer bits never cost more instructions on the whole small net here
    assert model.predict(default=(8, 8)) > model.predict(default=(1, 1)) > 0


@needs_rv32
def test_rv32_counts_exact_and_deterministic(tmp_path: Path) -> None:
    pairs = [(8, 8), (2, 2), (1, 1)]
    a, big = measure("rv32", "linear", [(32, 8), (128, 16)], tmp_path / "a", pairs=pairs)
    (b,) = measure("rv32", "linear", [(32, 8)], tmp_path / "b", pairs=pairs)
    assert a == b
    assert all(isinstance(v, int) and v > 0 for v in a.values())
    for p in pairs:  # 8x the MACs, more instructions at every bit pair
        assert big[p] > a[p]


@needs_rv32
def test_rv32_profile_run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "profile", "run", "--target", "rv32", "--kind", "linear", "--grid", "tiny",
                           "-o", tmp_path / "p", "--params-out", tmp_path / "params")
    assert rc == 0, err
    rows = list(csv.reader((tmp_path / "p" / "rv32_linear.csv").open()))
    assert rows[0] == ["N", "M", "K", "QA", "QW", "Time"] and len(rows) == 33
    assert all(float(r[-1]).is_integer() for r in rows[1:])
    assert (tmp_path / "params" / "rv32_linear.json").is_file()
    assert not (tmp_path / "p" / "rv32_conv2d.csv").exists()
    with pytest.raises(InputError, match="fitted on linear"):  # the conv layers need a conv2d bundle
        make_model("rv32", small_net(), params=tmp_path / "params" / "rv32_linear.json")


def test_missing_toolchain_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    with pytest.raises(ToolchainError, match="apt-get install"):
        profile_run("rv32", tmp_path / "o", grid="tiny")
    rc, _, err = run_cli(capsys, "profile", "run", "--target", "rv32", "--grid", "tiny", "-o", tmp_path / "o")
    assert rc == 2 and "gcc-riscv64-unknown-elf" in err
    monkeypatch.setenv("CC", "no-such-cc")
    rc, _, err = run_cli(capsys, "profile", "run", "--target", "host", "--grid", "tiny", "-o", tmp_path / "o")
    assert rc == 2 and "apt-get install gcc" in err
    assert not (tmp_path / "o" / "host_linear.csv").exists()


@needs_cc
def test_latency_constraint_on_host_and_rv32(host_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from micoc.search.constraints import constraints_from_text
    from micoc.search.space import SearchSpace

    g = small_net()
    space = SearchSpace.for_graph(g, [1, 2, 4, 8])
    monkeypatch.setenv("MICOC_PARAMS_DIR", str(host_run / "params"))
    for target in ("host", "rv32"):
        cs = constraints_from_text(g, target, space, ["latency=0.9"])
        frac = cs.fractions(np.stack([space.uniform(8), space.uniform(1)]))[:, 0]
        assert frac[0] == pytest.approx(1 / 0.9)  # all-8-bit, over a budget of 0.9 of it
        assert 0 < frac[1]


def test_profile_fit_for_runtime_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`micoc profile fit --target rv32` fits the runtime proxies (micoc-rt first) from any CSV."""
    rows = ["N,M,K,QA,QW,Time"] + [
        f"1,{m},{k},{a},{w},{m * k * (a * w + 8) // 4 + 40 * m + 300}"
        for m in (8, 16, 64) for k in (32, 128, 256) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8)
    ]
    csv_path = tmp_path / "rv32_linear.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "rv32_linear.json"
    rc, _, err = run_cli(capsys, "profile", "fit", "--target", "rv32", "--kind", "linear", "--csv", csv_path,
                         "-o", out)
    assert rc == 0, err
    doc = json.loads(out.read_text())
    assert doc["default"] == "micoc-rt" and doc["config"] is None
    assert [p["name"] for p in doc["proxies"]] == ["micoc-rt", "bops", "cbops", "cbops+shape"]
    rc, out_text, err = run_cli(capsys, "profile", "check", "--target", "rv32", "--kind", "linear", "--csv",
                                csv_path, "--params", out, "--json")
    assert rc == 0, err
    assert json.loads(out_text)["mape"] < 0.05
    rc, _, err = run_cli(capsys, "profile", "fit", "--target", "rv32", "--config", "high", "--kind", "linear",
                         "--csv", csv_path)
    assert rc == 2 and "no configurations" in err
