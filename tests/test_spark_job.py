"""The batch scoring job, submitted the way a DAG will: Airflow's SparkSubmitHook, local mode, example model."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import PLUGINS, PROJECT

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="Spark needs a Java runtime (17+)"
)

MODEL = PROJECT / "examples" / "staging" / "rental-pricing-batch" / "executable" / "rental_pricing_lr.spark.zip"
INPUT = PROJECT / "examples" / "batch-input" / "listings_to_score.csv"
JOB = PLUGINS / "model_governance" / "spark_jobs" / "score_batch.py"


def test_score_batch_through_spark_submit_hook(tmp_path, monkeypatch, capfd):
    pyspark = pytest.importorskip("pyspark")
    spark_submit = pytest.importorskip("airflow.providers.apache.spark.hooks.spark_submit")
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[1]"}')
    output = tmp_path / "scored.parquet"
    hook = spark_submit.SparkSubmitHook(
        conn_id="spark_local",
        # pip's pyspark ships spark-submit inside the package; from there it finds its own SPARK_HOME,
        # whatever is on PATH.
        spark_binary=str(Path(pyspark.__file__).parent / "bin" / "spark-submit"),
        name="score-batch-test",
        driver_memory="512m",
        conf={
            "spark.ui.enabled": "false",
            "spark.log.level": "WARN",
            "spark.sql.shuffle.partitions": "1",
            # The job must run in this interpreter (it has pyspark), not whatever python3 is on PATH.
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            # A short-lived JVM: the C1 compiler and the serial collector start faster (~20% here).
            "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
        },
        application_args=["--model", str(MODEL), "--input", str(INPUT), "--output", str(output)],
    )
    hook.submit(str(JOB))

    with INPUT.open(newline="") as handle:
        input_rows = list(csv.DictReader(handle))
    table = pq.read_table(output)
    assert table.num_rows == len(input_rows)
    assert table.column_names == [*input_rows[0].keys(), "price_prediction"]
    prediction = table.column("price_prediction")
    assert pa.types.is_floating(prediction.type)
    assert prediction.null_count == 0
    assert all(value > 0 for value in prediction.to_pylist())  # rents, not noise
    assert table.column("listing_id").to_pylist() == [row["listing_id"] for row in input_rows]

    # The job's last stdout line, relayed by the hook's log, is its JSON summary.
    captured = capfd.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if '{"rows"' in line]
    assert lines, "the job printed no JSON summary"
    summary, _ = json.JSONDecoder().raw_decode(lines[-1], lines[-1].index('{"rows"'))  # past the log prefix
    assert summary == {"rows": len(input_rows), "output": str(output), "columns": table.column_names}
