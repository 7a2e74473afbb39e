"""Train the rental pricing pipeline and export it as an MLeap bundle (runs on Spark with mleap-spark)."""

from pyspark.ml import Pipeline
from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import SparkSession

CONTINUOUS = ["bathrooms", "bedrooms", "security_deposit", "cleaning_fee", "extra_people",
              "number_of_reviews", "square_feet", "review_scores_rating"]
CATEGORICAL = ["state", "room_type", "host_is_superhost", "cancellation_policy", "instant_bookable"]


def main(listings_path: str, bundle_path: str) -> None:
    spark = SparkSession.builder.appName("rental-pricing-training").getOrCreate()
    listings = spark.read.csv(listings_path, header=True, inferSchema=True).dropna()
    indexers = [StringIndexer(inputCol=c, outputCol=f"{c}_index") for c in CATEGORICAL]
    encoders = [OneHotEncoder(inputCol=f"{c}_index", outputCol=f"{c}_oh") for c in CATEGORICAL]
    continuous = VectorAssembler(inputCols=CONTINUOUS, outputCol="unscaled_continuous_features")
    scaler = StandardScaler(inputCol="unscaled_continuous_features", outputCol="scaled_continuous_features")
    features = VectorAssembler(inputCols=["scaled_continuous_features"] + [f"{c}_oh" for c in CATEGORICAL],
                               outputCol="features")
    regression = LinearRegression(featuresCol="features", labelCol="price", predictionCol="price_prediction")
    model = Pipeline(stages=[*indexers, *encoders, continuous, scaler, features, regression]).fit(listings)

    import mleap.pyspark  # noqa: F401  (adds serializeToBundle)
    from mleap.pyspark.spark_support import SimpleSparkSerializer  # noqa: F401

    model.serializeToBundle(f"jar:file:{bundle_path}", model.transform(listings))


if __name__ == "__main__":
    import sys

    main(sys.argv[1], sys.argv[2])
