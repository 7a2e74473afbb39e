# Airflow with model-governance's runtime dependencies. The DAGs and plugins are mounted, not copied (see
# docker-compose.yaml), so the image holds only what they need, read from pyproject.toml itself: the list
# cannot drift from the project's.
#
# Extending the official image as Airflow documents it (https://airflow.apache.org/docs/docker-stack/build.html):
# apt packages as root, pip packages as the `airflow` user, pinning apache-airflow to the image's own version
# ($AIRFLOW_VERSION, set by the image) so pip can neither upgrade nor downgrade it (apache/airflow#30813).
# The entrypoint, user and paths stay the image's (/entrypoint, uid 50000, /opt/airflow).
FROM apache/airflow:3.3.2

USER root
# git: staging from git repositories; gcc + libkrb5-dev: the HDFS provider's Kerberos extras build from source;
# default-jre-headless: the Java runtime spark-submit needs for the `spark` host type (Java 17 on bookworm).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git gcc libkrb5-dev default-jre-headless \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# Debian's default-jre-headless links its JVM at /usr/lib/jvm/default-java (any architecture)
ENV JAVA_HOME=/usr/lib/jvm/default-java

USER airflow
# [project].dependencies of pyproject.toml, as a requirements file (tomllib: Python 3.11+, the image has 3.12)
COPY --chown=airflow:root pyproject.toml /opt/model-governance/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/opt/model-governance/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /opt/model-governance/requirements.txt \
    && cat /opt/model-governance/requirements.txt
# pyspark, at pyspark-client's pinned version (they share a folder, so they must match), brings spark-submit for
# the spark_default connection's local master; a cluster (YARN, Kubernetes, standalone) is a connection away.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/model-governance/requirements.txt \
        "pyspark==$(sed -n 's/^pyspark-client==//p' /opt/model-governance/requirements.txt)"
