"""Model-level latency (micoc.cost.model) and the estimate / profile CLI commands."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from micoc.cli import main
from micoc.cost import bitfusion
from micoc.cost.model import BopsLatency, LatencyModel, make_model
from micoc.cost.profiles import conv2d_features
from micoc.cost.proxies import shipped_proxy
from micoc.errors import InputError
from micoc.ir import Graph, GraphBuilder, f32
from micoc.ir.printer import save_mir


def _profiles_dir() -> Path:
    env = os.environ.get("MICOC_PROFILES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "profiles"


def _need(name: str) -> Path:
    path = _profiles_dir() / name
    if not path.is_file():
        pytest.skip(f"shared profile {name} not found in {_profiles_dir()} (set MICOC_PROFILES)")
    return path


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def small_net() -> Graph:
    b = GraphBuilder("small")
    x = b.input("x", f32(1, 3, 16, 16))
    y = b.op("conv2d", [x, b.const("conv1.w", _w(8, 3, 3, 3))], {"pad": [1, 1, 1, 1], "act": "relu"},
             layer="conv1")
    y = b.op("maxpool", [y], {"kernel": [2, 2], "stride": [2, 2]})
    y = b.op("conv2d", [y, b.const("dw.w", _w(8, 1, 3, 3))], {"pad": [1, 1, 1, 1], "groups": 8,
             "stride": [2, 2]}, layer="dw")
    y = b.op("global_avgpool", [y])
    y = b.op("reshape", [y], {"shape": [1, 8]})
    y = b.op("linear", [y, b.const("fc.w", _w(10, 8)), b.const("fc.b", _w(10))], layer="fc")
    b.output(y)
    return b.graph


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---------------------------------------------------------------------------
# The models


@pytest.mark.parametrize("target", ["bops", "vexii", "bitfusion"])
def test_predict_batch_equals_per_scheme(target: str) -> None:
    g = small_net()
    model = make_model(target, g)
    assert isinstance(model, LatencyModel) and model.target == target
    rng = np.random.default_rng(1)
    schemes = rng.choice([2, 3, 4, 8], size=(20, 3, 2))
    batch = model.predict_batch(schemes)
    loop = [
        model.predict({n: (int(w), int(a)) for n, (w, a) in zip(model.layer_names, s, strict=True)})
        for s in schemes
    ]
    np.testing.assert_allclose(batch, loop, rtol=1e-12)
    est = model.estimate({"fc": (2, 4)})
    assert est.total_cycles == pytest.approx(model.predict({"fc": (2, 4)}))


def test_bops_model_is_bops() -> None:
    model = BopsLatency(small_net())
    est = model.estimate(default=(4, 2))
    assert est.unit == "BOPs"
    assert est.total_cycles == est.total_bops == 8 * (16 * 16 * 8 * 27 + 4 * 4 * 8 * 9 + 80)


def test_bitfusion_mapping() -> None:
    model = make_model("bitfusion", small_net())
    est = {r.name: r for r in model.estimate(default=(4, 8)).rows}
    # padded 3x3 conv on 16x16 = the model's own padded conv (batch 1)
    conv = bitfusion.BitFusionLayer.conv(16, 16, 3, 8, 3, 1, pad=1, batch=1)
    assert est["conv1"].cycles == bitfusion.layer_cycles(conv, 8, 4)
    # depthwise: 8 groups of a 1 -> 1 channel conv, stride 2 on the padded 8x8
    dw = bitfusion.BitFusionLayer.conv(8, 8, 1, 1, 3, 2, pad=1, batch=1)
    assert est["dw"].cycles == 8 * bitfusion.layer_cycles(dw, 8, 4)
    assert est["fc"].cycles == bitfusion.layer_cycles(bitfusion.BitFusionLayer.fc(8, 10, batch=1), 8, 4)
    assert len(est) == 3  # pooling is not priced on the accelerator
    assert make_model("bitfusion", small_net(), batch=16).predict() > model.predict()


def test_vexii_uses_whole_layer_proxies_and_containers() -> None:
    model = make_model("vexii", small_net(), "small")
    est = {r.name: r for r in model.estimate(default=(3, 8)).rows}
    # padding goes into the input: 18x18 unpadded conv, bits 3 run in the 4-bit container
    f = conv2d_features(18, 18, 3, 8, 3, 1, 8, 4)
    want = shipped_proxy("small", "conv2d").predict(f)[0]
    assert est["conv1"].cycles == pytest.approx(want)
    assert est["maxpool_1"].cycles > 0 and est["global_avgpool_3"].cycles > 0
    assert model.predict(default=(3, 8)) == pytest.approx(model.predict(default=(4, 8)))
    bare = make_model("vexii", small_net(), "small", gemm_kind="bare")
    assert bare.predict() < model.predict()  # the bare kernel leaves out per-element layer work


def test_model_errors() -> None:
    g = small_net()
    with pytest.raises(InputError, match="unknown vexii config"):
        make_model("vexii", g, "huge")
    with pytest.raises(InputError, match="no configurations"):
        make_model("bops", g, "high")
    with pytest.raises(InputError, match="shape"):
        make_model("bops", g).predict_batch(np.full((5, 2, 2), 8))


# ---------------------------------------------------------------------------
# micoc estimate


@pytest.fixture()
def mir(tmp_path: Path) -> Path:
    path = tmp_path / "small.mir"
    save_mir(small_net(), path)
    return path


def test_estimate_table(capsys: pytest.CaptureFixture[str], mir: Path, tmp_path: Path) -> None:
    scheme = tmp_path / "s.json"
    scheme.write_text(json.dumps({"fc": {"w": 2, "a": 4}}))
    rc, out, _ = run_cli(capsys, "estimate", mir, "--target", "vexii", "--bits", "w4a8", "--scheme", scheme)
    assert rc == 0
    lines = out.splitlines()
    assert "target vexii/high" in lines[0]
    assert lines[1].split() == ["layer", "op", "shape", "MACs", "BOPs", "wbits", "abits", "cycles"]
    rows = {ln.split()[0]: ln.split() for ln in lines[3:-1]}
    assert lines[-1].startswith(f"params {8 * 27 + 8 * 9 + 8 * 10 + 10:,} ")
    assert set(rows) == {"conv1", "maxpool_1", "dw", "global_avgpool_3", "fc", "total"}
    assert rows["fc"][-3:-1] == ["2", "4"] and rows["conv1"][-3:-1] == ["4", "8"]
    assert rows["conv1"][-5] == f"{16 * 16 * 8 * 27:,}"


@pytest.mark.parametrize("target", ["vexii", "bitfusion", "bops"])
def test_estimate_json(capsys: pytest.CaptureFixture[str], mir: Path, target: str) -> None:
    rc, out, _ = run_cli(capsys, "estimate", mir, "--target", target, "--bits", "w2a4", "--json")
    assert rc == 0
    doc = json.loads(out)
    want = make_model(target, small_net()).predict(default=(2, 4))
    assert doc["total"]["cycles"] == pytest.approx(want)
    assert doc["total"]["macs"] == 16 * 16 * 8 * 27 + 4 * 4 * 8 * 9 + 80
    assert [r["name"] for r in doc["rows"] if r["wbits"] is not None] == ["conv1", "dw", "fc"]
    # weights at 2 bits (rounded up to whole bytes per layer) + int32 bias
    assert doc["analysis"]["weight_bytes"] == 216 // 4 + 72 // 4 + 80 // 4 + 4 * 10
    assert doc["analysis"]["bops"] == 8 * doc["total"]["macs"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"nope": {"w": 4, "a": 4}}', "unknown layer(s) nope"),
        ('{"fc": {"w": 9, "a": 4}}', "w=9 (bits must be integers in 1..8)"),
        ('{"fc": {"w": 4}}', "expected"),
        ('{"fc": {"w": 4, "a": 4}', "not valid JSON"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_estimate_bad_scheme(
    capsys: pytest.CaptureFixture[str], mir: Path, tmp_path: Path, content: str, message: str
) -> None:
    scheme = tmp_path / "bad.json"
    scheme.write_text(content)
    rc, _, err = run_cli(capsys, "estimate", mir, "--target", "bops", "--scheme", scheme)
    assert rc == 2
    assert "bad.json" in err and message in err


def test_estimate_bad_usage(capsys: pytest.CaptureFixture[str], mir: Path) -> None:
    for args in (["--bits", "w4"], ["--config", "high"], ["--batch", "4"]):
        rc, _, err = run_cli(capsys, "estimate", mir, "--target", "bops", *args)
        assert rc == 2 and err
    rc, _, err = run_cli(capsys, "estimate", mir.with_suffix(".onnx"), "--target", "bops")
    assert rc == 2 and "no such file" in err


# ---------------------------------------------------------------------------
# micoc profile check / fit


def _subset(src: Path, dst: Path, every: int) -> Path:
    """Every `every`-th data row of a CSV (keeps the test fast; the full check is a bench)."""
    with src.open() as f:
        rows = list(csv.reader(f))
    dst.write_text("\n".join(",".join(r) for r in [rows[0], *rows[1::every]]) + "\n")
    return dst


def test_profile_check_bitfusion_exact(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mm = _need("bitfusion_matmul_samples.csv")
    conv = _subset(_need("bitfusion_conv2d_samples.csv"), tmp_path / "bitfusion_conv2d_part.csv", 6)
    for kind, path in (("matmul", _subset(mm, tmp_path / "bitfusion_matmul_part.csv", 2)), ("conv2d", conv)):
        rc, out, _ = run_cli(capsys, "profile", "check", "--target", "bitfusion", "--kind", kind,
                             "--csv", path, "--json")
        assert rc == 0
        doc = json.loads(out)
        assert doc["rows"] > 150
        assert doc["exact_fraction"] >= 0.99, kind
        assert doc["r2"] > 0.999 and doc["mape"] < 0.01 and doc["spearman"] > 0.999


def test_profile_check_vexii_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    path = _need("mico_high_bitlinear_test.csv")
    rc, out, _ = run_cli(capsys, "profile", "check", "--target", "vexii", "--kind", "linear", "--csv", path)
    assert rc == 0
    assert "432 rows" in out and "R^2" in out and "MAPE" in out and "Spearman" in out and "exact" in out
    rc, out, _ = run_cli(capsys, "profile", "check", "--target", "vexii", "--config", "high",
                         "--kind", "linear", "--csv", path, "--json")
    doc = json.loads(out)
    assert set(doc) >= {"r2", "mape", "spearman", "exact_fraction", "rows"}
    assert doc["rows"] == 432 and doc["r2"] > 0.95 and 0 <= doc["mape"] < 0.1


def test_profile_fit_then_check(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    avg = _need("mico_small_avgpool4d_f32_test.csv")
    mx = _need("mico_small_maxpool4d_f32_test.csv")
    out_json = tmp_path / "pool.json"
    rc, _, err = run_cli(capsys, "profile", "fit", "--target", "vexii", "--config", "small", "--kind", "pool",
                         "--csv", avg, "--csv", mx, "-o", out_json)
    assert rc == 0 and "cbops+shape" in err
    bundle = json.loads(out_json.read_text())
    assert bundle["kind"] == "pool" and bundle["config"] == "small"
    rc, out, _ = run_cli(capsys, "profile", "check", "--target", "vexii", "--kind", "pool", "--csv", avg,
                         "--csv", mx, "--params", out_json, "--json")
    assert rc == 0 and json.loads(out)["r2"] > 0.9
    rc, _, err = run_cli(capsys, "profile", "check", "--target", "vexii", "--kind", "linear", "--csv", avg,
                         "--params", out_json)
    assert rc == 2 and "pool" in err


def _bad_csvs(tmp_path: Path) -> list[tuple[Path, str]]:
    missing = tmp_path / "missing_cols.csv"
    missing.write_text("N,M,QA,QW,Time\n1,2,8,8,100\n")
    nonnum = tmp_path / "non_numeric.csv"
    nonnum.write_text("N,M,K,QA,QW,Time\n16,64,64,8,8,100\n16,64,abc,8,8,100\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    return [(missing, "missing_cols.csv:1"), (nonnum, "non_numeric.csv:3"), (empty, "empty.csv")]


@pytest.mark.parametrize("target", ["vexii", "bitfusion"])
def test_profile_check_bad_csvs(capsys: pytest.CaptureFixture[str], tmp_path: Path, target: str) -> None:
    for path, where in _bad_csvs(tmp_path):
        rc, _, err = run_cli(capsys, "profile", "check", "--target", target, "--kind", "matmul", "--csv", path)
        assert rc == 2, path
        assert where in err, err


def test_profile_fit_bad_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for path, where in _bad_csvs(tmp_path):
        rc, _, err = run_cli(capsys, "profile", "fit", "--target", "vexii", "--kind", "matmul", "--csv", path)
        assert rc == 2 and where in err, err
    rc, _, err = run_cli(capsys, "profile", "fit", "--target", "vexii", "--kind", "matmul",
                         "--csv", tmp_path / "absent.csv")
    assert rc == 2 and "absent.csv" in err


def test_profile_check_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("C,H,W,K,S,Time\n1,8,8,2,1,100\n")
    rc, _, err = run_cli(capsys, "profile", "check", "--target", "bitfusion", "--kind", "pool", "--csv", path)
    assert rc == 2 and "matmul or conv2d" in err
    rc, _, err = run_cli(capsys, "profile", "check", "--target", "bitfusion", "--kind", "matmul",
                         "--config", "high", "--csv", path)
    assert rc == 2
    # a row the exact model rejects is reported with its file and line
    bad = tmp_path / "bits.csv"
    bad.write_text("N,M,K,QA,QW,Time\n16,64,64,8,8,100\n16,64,64,16,8,100\n")
    rc, _, err = run_cli(capsys, "profile", "check", "--target", "bitfusion", "--kind", "matmul", "--csv", bad)
    assert rc == 2 and "bits.csv:3" in err
