"""Batch scoring with a saved Spark ML PipelineModel: a standalone PySpark application for spark-submit.

    spark-submit score_batch.py --model rental_pricing_lr.spark.zip \
        --input a.csv --input b.parquet --output scored.parquet [--overwrite]

Reads the inputs (CSV with a header row, or parquet, told apart by extension), scores their union, writes
the input columns plus the prediction column(s) as parquet, and prints one JSON line last on stdout:
{"rows": N, "output": "...", "columns": [...]}. The prediction columns are the pipeline's own (see
`prediction_columns`) unless `--prediction-column` names them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved PipelineModel folder, or a .zip of one")
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        dest="inputs",
        help="a CSV (with header) or parquet dataset; repeat to score several together",
    )
    parser.add_argument("--output", required=True, help="where the scored rows are written, as parquet")
    parser.add_argument(
        "--prediction-column",
        action="append",
        dest="prediction_columns",
        default=[],
        help="a column to keep besides the inputs; repeat for several (default: the pipeline's own)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (default: fail rather than clobber earlier scores)",
    )
    return parser.parse_args(argv)


def prediction_columns(stages: list[dict[str, Any]]) -> list[str]:
    """The columns a pipeline predicts into, from its stages' params in order: every predictor's
    `predictionCol`, then what later stages derive from one (IndexToString's label); without a predictor,
    the last stage's `outputCol`(s). The deploy step reads the params from the saved metadata, this job
    from the loaded stages: one rule for both."""
    found: list[str] = []
    for params in stages:
        if params.get("predictionCol"):
            found.append(str(params["predictionCol"]))
        elif found and params.get("inputCol") in found and params.get("outputCol"):
            found.append(str(params["outputCol"]))
    if not found and stages:
        last = stages[-1]
        found = (
            [str(last["outputCol"])]
            if last.get("outputCol")
            else [str(c) for c in last.get("outputCols") or []]
        )
    return found


def stage_params(stage: Any) -> dict[str, Any]:
    """A loaded stage's params, set or defaulted, by name."""
    return {p.name: stage.getOrDefault(p) for p in stage.params if stage.isDefined(p)}


def input_format(path: str) -> str:
    name = path.rstrip("/").lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise SystemExit(f"cannot tell the format of input {path!r}: name it *.csv or *.parquet")


def unpack_model(model: str, scratch: str) -> str:
    """The model folder to load: `model` itself, or where its zip was extracted."""
    if not model.lower().endswith(".zip"):
        return model
    # PipelineModel.load only reads folders. The extracted copy is on the driver's local disk, which is
    # enough for local mode; on a cluster pass a shared (HDFS/object store) folder instead of a zip.
    target = Path(scratch) / "model"
    with zipfile.ZipFile(model) as archive:
        archive.extractall(target)
    if not (target / "metadata").is_dir():
        raise SystemExit(f"{model} does not hold a saved Spark ML model (no metadata/ at its top level)")
    return target.as_uri()


def read_inputs(spark: SparkSession, paths: list[str]) -> DataFrame:
    frames = []
    for path in paths:
        if input_format(path) == "csv":
            # inferSchema: the pipeline's VectorAssembler needs numeric columns, not CSV strings.
            frames.append(spark.read.csv(path, header=True, inferSchema=True))
        else:
            frames.append(spark.read.parquet(path))
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)  # by name: files may order their columns differently
    return union


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path in args.inputs:
        input_format(path)  # fail on an unknown format before paying for a Spark session
    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("model-governance-score-batch").getOrCreate()
    try:
        with tempfile.TemporaryDirectory(prefix="score-batch-") as scratch:
            model = PipelineModel.load(unpack_model(args.model, scratch))
            rows = read_inputs(spark, args.inputs)
            predicted = args.prediction_columns or prediction_columns([stage_params(s) for s in model.stages])
            if not predicted:
                raise SystemExit(
                    f"{args.model}: the pipeline names no prediction column; pass --prediction-column"
                )
            # Drop the pipeline's intermediate columns (indexes, vectors): consumers want inputs, predictions.
            scored = model.transform(rows).select(*rows.columns, *predicted)
            scored.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.output)
        # Count what was written rather than re-running the pipeline.
        written = spark.read.parquet(args.output)
        summary = {"rows": written.count(), "output": args.output, "columns": written.columns}
    finally:
        spark.stop()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
