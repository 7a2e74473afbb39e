"""Stand-ins for Apache Atlas, MLeap serving and WebHDFS, speaking their real REST contracts on loopback.

They are the embedded default for `make demo` and the targets of the tests; users point the same Airflow
connections at their real services instead.
"""
