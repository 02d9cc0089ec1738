-- One database per service (SPEC §2: no service reads another's tables). Run once by the
-- postgres image on an empty volume; the migrations job creates the schemas inside them.
CREATE DATABASE ingest;
CREATE DATABASE scoring;
CREATE DATABASE rewards;
CREATE DATABASE notify;

-- The read-only login of Grafana's "Engage business" dashboard. Its only grants (CONNECT on
-- scoring, USAGE on schema scoring, SELECT on scoring.kpi_day and scoring.kpi_month) come after
-- the migrations job created them: docs/operations.md, "Dashboards and alerts". Set a real
-- password (GRAFANA_DB_PASSWORD in the compose environment) before exposing Grafana.
CREATE ROLE engage_grafana LOGIN PASSWORD 'grafana';
ALTER ROLE engage_grafana SET default_transaction_read_only = on;
