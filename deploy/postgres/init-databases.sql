-- One database per service (SPEC §2: no service reads another's tables). Run once by the
-- postgres image on an empty volume; the migrations job creates the schemas inside them.
CREATE DATABASE ingest;
CREATE DATABASE scoring;
CREATE DATABASE rewards;
CREATE DATABASE notify;
