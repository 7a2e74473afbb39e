# Airflow with model-governance's dependencies (the DAGs and plugins are mounted, not copied).
FROM apache/airflow:3.3.2
USER root
RUN apt-get update && apt-get install -y --no-install-recommends libkrb5-dev gcc git && rm -rf /var/lib/apt/lists/*
USER airflow
RUN pip install --no-cache-dir "apache-airflow==3.3.2" apache-airflow-providers-apache-hdfs apache-airflow-providers-http \
    apache-airflow-providers-celery apache-airflow-providers-postgres "pyatlasclient==1.2.0" requests pyyaml
