"""Train the rental pricing batch pipeline and save it as a zipped Spark ML PipelineModel.

Usage: python code/train_model.py [listings.csv] [model.zip]
(defaults: ../trainingdata/listings_sample.csv and ../executable/rental_pricing_lr.spark.zip)
"""

import os
import sys
import tempfile
import zipfile
from pathlib import Path

from pyspark.ml import Pipeline
from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import SparkSession

HERE = Path(__file__).resolve().parents[1]
CONTINUOUS = ["bathrooms", "bedrooms", "square_feet", "security_deposit", "cleaning_fee",
              "extra_people", "number_of_reviews", "review_scores_rating"]
CATEGORICAL = ["state", "room_type"]


def build_pipeline() -> Pipeline:
    # "keep" gives unseen states / room types their own bucket instead of failing a whole batch.
    indexers = [StringIndexer(inputCol=c, outputCol=f"{c}_index", handleInvalid="keep") for c in CATEGORICAL]
    encoders = [OneHotEncoder(inputCol=f"{c}_index", outputCol=f"{c}_oh") for c in CATEGORICAL]
    features = VectorAssembler(inputCols=CONTINUOUS + [f"{c}_oh" for c in CATEGORICAL], outputCol="features")
    # A little ridge regularisation: 40 rows and 12 features would leave the normal equations singular.
    regression = LinearRegression(featuresCol="features", labelCol="price", predictionCol="price_prediction",
                                  regParam=0.1)
    return Pipeline(stages=[*indexers, *encoders, features, regression])


def zip_folder(folder: Path, target: Path) -> None:
    """Zip `folder` with entries relative to it (metadata/, stages/ at the top), without Hadoop's .crc files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".crc"):
                archive.write(path, path.relative_to(folder).as_posix())


def main(listings_path: str, zip_path: str) -> None:
    # The scoring job and the workers need this interpreter (the one that has pyspark), not the system's python3.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.appName("rental-pricing-batch-training").master("local[1]")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    try:
        listings = spark.read.csv(listings_path, header=True, inferSchema=True).dropna()
        model = build_pipeline().fit(listings)
        with tempfile.TemporaryDirectory(prefix="rental-pricing-batch-") as scratch:
            saved = Path(scratch) / "pipeline"
            model.save(str(saved))
            zip_folder(saved, Path(zip_path))
        print(f"trained on {listings.count()} listings, saved {zip_path}")
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE / "trainingdata" / "listings_sample.csv"),
         sys.argv[2] if len(sys.argv) > 2 else str(HERE / "executable" / "rental_pricing_lr.spark.zip"))
