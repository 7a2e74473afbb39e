"""The connection ids every DAG, operator and command defaults to, written once."""

ATLAS_CONN_ID = "atlas_default"
MLEAP_CONN_ID = "mleap_default"
WEBHDFS_CONN_ID = "webhdfs_default"
SPARK_CONN_ID = "spark_default"
STAGING_CONN_ID = "staging_default"
