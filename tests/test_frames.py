"""evalkit.load_run on a real run directory (tiny random model, the pipeline test's suite):
the DataFrames' shapes, dtypes and figures against results.json, records.parquet against
records.jsonl, and the errors for a directory that is not a run."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import evalkit
from evalkit.errors import EXIT_BAD_INPUT, InputError
from evalkit.pipeline import run_suite
from tests.conftest import write_jsonl
from tests.test_pipeline import make_adapter, suite_text

GATES = (
    "  - variant: a1\n    require: no_forgetting\n    severity: warning\n"
    "  - variant: a1\n    task: qa\n    metric: exact_match\n    require: improved\n"
)


@pytest.fixture(scope="module")
def run_dir(
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    d = tmp_path_factory.mktemp("frames")
    write_jsonl(
        d / "qa.jsonl",
        [{"id": f"q{i}", "q": f"What is {i} plus {i}?", "a": str(2 * i)} for i in range(6)],
    )
    make_adapter(tiny_model_dir, d / "good")
    path = d / "tiny.yaml"
    path.write_text(suite_text(tiny_model_dir, "good", GATES))
    mp = pytest.MonkeyPatch()
    mp.setenv("EVALKIT_CACHE_DIR", str(d / "cache"))  # this test's own result cache
    try:
        return run_suite(path, output_dir=d / "run", limit=4).output_dir
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def test_samples_cover_every_example_variant_and_metric(
    run_dir: Path, results: dict[str, Any]
) -> None:
    run = evalkit.load_run(run_dir)
    s = run.samples
    variants = [v["name"] for v in results["variants"]]
    assert variants == ["base", "a1", "merged:a1"]
    expected_rows = sum(t["n"] * len(t["metrics"]) for t in results["tasks"]) * len(variants)
    assert len(s) == expected_rows
    assert not s.duplicated(["task", "example_id", "variant", "metric"]).any()
    assert list(s.columns[:6]) == ["task", "task_kind", "example_id", "variant", "metric", "value"]
    assert isinstance(s["variant"].dtype, pd.CategoricalDtype)
    assert list(s["variant"].cat.categories) == variants
    assert s["task"].dtype == "category" and s["metric"].dtype == "category"
    assert isinstance(s["example_id"].dtype, pd.StringDtype)
    assert isinstance(s["output"].dtype, pd.StringDtype)
    assert s["value"].dtype == np.float64 and s["base_value"].dtype == np.float64
    assert set(s["task_kind"]) == {"golden", "probe"}
    # the whole-document probe, which results.json's samples leave out, is there too
    assert (s["task"] == "prose-perplexity").sum() == 4 * len(variants)

    # every per-example value, output and reference is results.json's
    indexed = s.set_index(["task", "example_id", "variant", "metric"])
    checked = 0
    for sample in results["samples"]:
        for variant, per_metric in sample["scores"].items():
            for metric, value in per_metric.items():
                row = indexed.loc[(sample["task"], sample["id"], variant, metric)]
                assert row["value"] == pytest.approx(_nan(value), nan_ok=True, rel=1e-12)
                assert _plain(row["output"]) == sample["outputs"].get(variant)
                assert _plain(row["reference"]) == sample["reference"]
                assert row["prompt"] == sample["prompt"]
                checked += 1
    assert checked == len(s) - (s["task"] == "prose-perplexity").sum()

    # base_value is the base's value on the same example and metric
    base = s[s["variant"] == "base"].set_index(["task", "example_id", "metric"])["value"]
    a1 = s[s["variant"] == "a1"].set_index(["task", "example_id", "metric"])
    assert np.allclose(a1["base_value"], base.loc[a1.index], equal_nan=True)


def test_samples_aggregate_to_the_reported_metrics(run_dir: Path, results: dict) -> None:
    s = evalkit.load_run(run_dir).samples
    reported = {(r["task"], r["metric"], r["variant"]): r["value"] for r in results["metrics"]}
    for (task, metric, variant), group in s.groupby(["task", "metric", "variant"], observed=True):
        scored = group.dropna(subset=["value"])
        if metric in ("perplexity", "reference_perplexity"):
            # per-example perplexities back to NLL sums, pooled by token count
            nll = (np.log(scored["value"]) * scored["weight"]).sum()
            value = math.exp(nll / scored["weight"].sum())
        else:
            value = scored["value"].mean()
        want = _nan(reported[(task, metric, variant)])
        assert value == pytest.approx(want, rel=1e-9, nan_ok=True), (task, metric, variant)


def test_metrics_comparisons_and_gates(run_dir: Path, results: dict[str, Any]) -> None:
    run = evalkit.load_run(run_dir)
    m = run.metrics
    assert len(m) == len(results["metrics"]) == 10 * 3  # knowledge-open: acc and open_shift
    assert m["n"].dtype == np.int64 and m["value"].dtype == np.float64
    first = results["metrics"][0]
    row = m.iloc[0]
    assert (row["task"], row["metric"], row["variant"]) == (
        first["task"],
        first["metric"],
        first["variant"],
    )
    assert row["value"] == pytest.approx(_nan(first["value"]), nan_ok=True)
    # the report's matrix, as the README writes it
    matrix = m.pivot_table(
        index=["task", "metric"], columns="variant", values="value", observed=True
    )
    assert matrix.shape == (10, 3) and list(matrix.columns) == ["base", "a1", "merged:a1"]
    assert matrix.loc[("qa", "reference_perplexity"), "a1"] == pytest.approx(
        next(
            r["value"]
            for r in results["metrics"]
            if (r["task"], r["metric"], r["variant"]) == ("qa", "reference_perplexity", "a1")
        )
    )
    ppl = m[(m["metric"] == "reference_perplexity")]
    assert (ppl["higher_is_better"] == False).all()  # noqa: E712 (a nullable boolean)
    assert (ppl["margin"] == 0.1).all() and (ppl["delta_kind"] == "ratio").all()

    c = run.comparisons
    assert len(c) == len(results["comparisons"]) == 10 * 2
    assert c["verdict"].dtype == "category" and c["n"].dtype == np.int64
    for col in ("delta", "ci_low", "ci_high", "p_value", "p_adjusted", "mde"):
        assert c[col].dtype == np.float64
        expected = [_nan(r[col]) for r in results["comparisons"]]
        assert np.allclose(c[col].to_numpy(), expected, equal_nan=True), col
    assert list(c["verdict"].astype(str)) == [r["verdict"] for r in results["comparisons"]]
    assert set(c["task_kind"]) == {"golden", "probe"}

    g = run.gates
    assert list(g["name"]) == [x["name"] for x in results["gates"]]
    assert g["passed"].dtype == bool
    assert list(g["passed"]) == [x["passed"] for x in results["gates"]]
    assert list(g["severity"].astype(str)) == ["warning", "error"]


def test_flipped_examples_as_in_the_readme(run_dir: Path, results: dict[str, Any]) -> None:
    run = evalkit.load_run(run_dir)
    s = run.samples.query("task == 'knowledge-mc' and variant == 'a1'")
    flipped = s[(s.base_value == 1) & (s.value == 0)]
    expected = {
        x["id"]
        for x in results["samples"]
        if x["task"] == "knowledge-mc"
        and x["scores"]["base"]["accuracy"] == 1
        and x["scores"]["a1"]["accuracy"] == 0
    }
    assert expected  # the tiny adapter loses at least one multiple-choice item here
    assert set(flipped["example_id"]) == expected
    # the option each variant chose is the output
    assert all(isinstance(o, str) and o for o in flipped["output"])


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return [float(v) for v in x]
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    return x.item() if hasattr(x, "item") else x


def test_records_parquet_round_trips(run_dir: Path) -> None:
    rows = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    df = pd.read_parquet(run_dir / "records.parquet")
    assert len(df) == len(rows) == 5 * 4 * 3
    assert list(df.columns) == list(rows[0])
    assert df["nll"].dtype == np.float64
    back = [{k: _plain(v) for k, v in r.items()} for r in df.to_dict("records")]
    want = [
        {k: ([float(x) for x in v] if isinstance(v, list) else v) for k, v in r.items()}
        for r in rows
    ]
    assert back == want
    # typed by the Record fields: a column that is empty here keeps its type
    schema = pq.read_schema(run_dir / "records.parquet")
    assert schema.field("choice_logprobs").type == pa.list_(pa.float64())
    assert schema.field("n_tokens").type == pa.int64()
    assert schema.field("kl").type == pa.float64()
    assert schema.field("output").type == pa.string()
    pd.testing.assert_frame_equal(evalkit.load_run(run_dir).records, df)
    assert not list(run_dir.glob(".*.tmp"))


def test_a_run_without_scores_json_keeps_the_examples(run_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "old")
    (copy / "scores.json").unlink()
    (copy / "records.parquet").unlink()
    run = evalkit.load_run(copy)
    full = evalkit.load_run(run_dir).samples
    assert len(run.samples) == (full["task"] != "prose-perplexity").sum()
    assert run.samples["weight"].isna().all()
    # records.jsonl is read when there is no records.parquet
    assert len(run.records) == 60 and run.records["nll"].dtype == np.float64


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no results\.json here") as err:
        evalkit.load_run(tmp_path)
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert "evalkit run" in (err.value.hint or "")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read results"):
        evalkit.load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"metrics": [{"task": "x"}]}))
    with pytest.raises(InputError, match="not a results file"):
        _ = evalkit.load_run(tmp_path).metrics


def test_import_evalkit_stays_free_of_pandas_and_torch() -> None:
    code = (
        "import sys, evalkit; evalkit.load_run; "
        "print(sorted({'torch', 'pandas', 'pyarrow'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
