"""Batch scoring with a saved Spark ML PipelineModel: a standalone PySpark application for spark-submit.

    spark-submit score_batch.py --model rental_pricing_lr.spark.zip \
        --input a.csv --input b.parquet --output scored.parquet [--overwrite]

Reads the inputs (CSV with a header row, or parquet, told apart by extension), scores their union, writes
the input columns plus the prediction column as parquet, and prints one JSON line last on stdout:
{"rows": N, "output": "...", "columns": [...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved PipelineModel folder, or a .zip of one")
    parser.add_argument("--input", required=True, action="append", dest="inputs",
                        help="a CSV (with header) or parquet dataset; repeat to score several together")
    parser.add_argument("--output", required=True, help="where the scored rows are written, as parquet")
    parser.add_argument("--prediction-column", default="price_prediction")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output (default: fail rather than clobber earlier scores)")
    return parser.parse_args(argv)


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


def read_inputs(spark, paths: list[str]):
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
            # Drop the pipeline's intermediate columns (indexes, vectors): consumers want inputs + prediction.
            scored = model.transform(rows).select(*rows.columns, args.prediction_column)
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
