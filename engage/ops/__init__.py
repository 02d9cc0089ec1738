"""Operations tooling: dashboards as code and the check that proves them against Prometheus."""
