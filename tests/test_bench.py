"""The benchmark commands print a table and write JSON records with the documented keys."""
import json

from tests.conftest import run_cli

RASTER_KEYS = {"n", "width", "height", "sh_degree", "fwd_ms", "bwd_ms", "ref_fwd_ms", "ref_bwd_ms", "peak_mem_mb",
               "device"}


def test_bench_raster_writes_one_record_per_case(tmp_path):
    out = tmp_path / "raster.json"
    r = run_cli("bench", "raster", "--sizes", "500", "3000", "--resolutions", "64x48", "--repeats", "1",
                "--json", out)
    assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [(x["n"], x["width"], x["height"]) for x in records] == [(500, 64, 48), (3000, 64, 48)]
    for x in records:
        assert RASTER_KEYS <= set(x)
        assert x["fwd_ms"] > 0 and x["bwd_ms"] > 0 and x["ref_fwd_ms"] > 0 and x["device"] == "cpu"
    assert "fwd+bwd ms" in r.stdout + r.stderr


def test_bench_raster_leaves_the_reference_out_above_its_budget(tmp_path):
    out = tmp_path / "raster.json"
    r = run_cli("bench", "raster", "--sizes", "2000", "--resolutions", "64x48", "--repeats", "1",
                "--reference-budget", "10", "--json", out)
    assert r.returncode == 0, r.stderr[-3000:]
    (x,) = json.loads(out.read_text())
    assert x["ref_fwd_ms"] is None and x["ref_bwd_ms"] is None and x["fwd_ms"] > 0


MESH_KEYS = {"faces", "width", "height", "fwd_ms", "bwd_ms", "ref_fwd_ms", "ref_bwd_ms", "peak_mem_mb", "device"}


def test_bench_mesh_writes_one_record_per_case_with_the_reference_within_its_budget(tmp_path):
    out = tmp_path / "mesh.json"
    r = run_cli("bench", "mesh", "--faces", "200", "2000", "--resolutions", "40x32", "--repeats", "1",
                "--reference-budget", "1000000", "--json", out)
    assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [(x["width"], x["height"]) for x in records] == [(40, 32)] * 2
    for x in records:
        assert MESH_KEYS <= set(x) and x["fwd_ms"] > 0 and x["bwd_ms"] > 0 and x["device"] == "cpu"
    small, large = records
    assert small["faces"] < 1_000_000 // (40 * 32) < large["faces"]
    assert small["ref_fwd_ms"] > 0 and large["ref_fwd_ms"] is None  # 40·32·faces against the budget
