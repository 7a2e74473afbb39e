"""Step 2b, per serving API: legacy mleap-serving (legacy.py), mleap-spring-boot (spring_boot.py), the
microservice host type that picks between them (microservice.py), Spark batch (spark.py); the bundle's
way to the server (delivery.py) and the checks a deployment must pass (verify.py)."""
