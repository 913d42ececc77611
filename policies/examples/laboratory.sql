-- Medical laboratory information system (LIS): the schema behind laboratory.toml.
--
-- A LIS like the one behind the 2021 French lab leak, where an export of patient files spilled
-- NIRs, blood groups, HIV serologies and pregnancy flags. Run it as a superuser in the LIS
-- database:
--
--     psql -v ON_ERROR_STOP=1 -d lis -f policies/examples/laboratory.sql
--
-- Sealed columns are stored as text (randomized and deterministic) or keep their type (tokens);
-- the policy declares the plaintext type (pregnant is a boolean to the application). Roles are
-- created only when missing, with demo passwords equal to their names.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lab_app') THEN
        CREATE ROLE lab_app LOGIN PASSWORD 'lab_app';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lab_export') THEN
        CREATE ROLE lab_export LOGIN PASSWORD 'lab_export';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

CREATE SCHEMA IF NOT EXISTS lis;

CREATE TABLE IF NOT EXISTS lis.patients (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nir          varchar(15) NOT NULL UNIQUE, -- tokenize-nir, domain patient-nir
    last_name    text,                        -- deterministic
    first_name   text,                        -- deterministic
    birth_date   text,                        -- randomized; a date to the application
    sex          char(1),
    blood_group  text,                        -- randomized: eight values, too few to hide
    hiv_serology text,                        -- randomized
    phone        text                         -- deterministic
);

CREATE TABLE IF NOT EXISTS lis.samples (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id      bigint NOT NULL REFERENCES lis.patients (id),
    collected_at    timestamptz NOT NULL,
    prescriber_rpps varchar(11),              -- tokenize-digits (RPPS number)
    pregnant        text                      -- randomized; a boolean to the application
);

CREATE TABLE IF NOT EXISTS lis.results (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sample_id    bigint NOT NULL REFERENCES lis.samples (id),
    patient_nir  varchar(15) NOT NULL,         -- tokenize-nir, same domain as lis.patients.nir
    loinc_code   varchar(10) NOT NULL,
    value        text,                         -- randomized
    unit         text,
    abnormal     boolean,
    comment      text,                         -- randomized
    validated_at timestamptz
);

CREATE INDEX IF NOT EXISTS results_patient_nir_idx ON lis.results (patient_nir);
CREATE INDEX IF NOT EXISTS samples_patient_idx ON lis.samples (patient_id);

GRANT USAGE ON SCHEMA lis TO lab_app, lab_export;
GRANT SELECT, INSERT, UPDATE, DELETE ON lis.patients, lis.samples, lis.results TO lab_app;
-- The export interface (results to prescribers and the patient's shared record) only reads.
GRANT SELECT ON lis.patients, lis.samples, lis.results TO lab_export;
