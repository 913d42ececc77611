-- Hospital EHR: the schema behind policies/examples/hospital.toml.
--
-- A patient record system like those emptied through an abused privileged support account.
-- Run it as a superuser in the database the EHR uses:
--
--     psql -v ON_ERROR_STOP=1 -d ehr -f policies/examples/hospital.sql
--
-- Columns sealed randomized or deterministic are stored as text (the armored envelope); the
-- policy declares the type the application sees (birth_date is a date to the application).
-- Tokenized columns keep their type (nir is varchar(15) and holds a NIR-shaped token).
-- No rows here: data goes in through pgseal, which seals it on the way.
--
-- Roles are cluster-wide: they are created only when missing (a concurrent run is tolerated),
-- with demo passwords equal to their names. Change them for anything but a demo.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ehr_app') THEN
        CREATE ROLE ehr_app LOGIN PASSWORD 'ehr_app';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ehr_billing') THEN
        CREATE ROLE ehr_billing LOGIN PASSWORD 'ehr_billing';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ehr_admin') THEN
        CREATE ROLE ehr_admin LOGIN PASSWORD 'ehr_admin';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS public.patients (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nir         varchar(15) NOT NULL UNIQUE, -- tokenize-nir: a valid-looking NIR token
    last_name   text,                        -- deterministic (searchable by equality)
    first_name  text,                        -- randomized, with a search index
    birth_date  text,                        -- randomized; a date to the application
    sex         char(1),
    email       text,                        -- deterministic
    phone       text,                        -- deterministic
    address     text,                        -- randomized
    postal_code varchar(5),
    city        text,
    gp_name     text
);

CREATE TABLE IF NOT EXISTS public.consultations (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    patient_id     bigint NOT NULL REFERENCES public.patients (id),
    seen_at        timestamptz NOT NULL,
    diagnosis_code text,                     -- deterministic: counts by code still work
    notes          text,                     -- randomized
    prescription   text                      -- randomized
);

CREATE INDEX IF NOT EXISTS patients_last_name_idx ON public.patients (last_name);
CREATE INDEX IF NOT EXISTS consultations_patient_idx ON public.consultations (patient_id);
CREATE INDEX IF NOT EXISTS consultations_diagnosis_idx ON public.consultations (diagnosis_code);

-- The application reads and writes everything.
GRANT SELECT, INSERT, UPDATE, DELETE ON public.patients, public.consultations TO ehr_app;
-- Billing reads; pgseal masks identities and refuses clinical free text.
GRANT SELECT ON public.patients, public.consultations TO ehr_billing;
-- The support/DBA account holds every privilege on the tables; pgseal only ever shows it
-- ciphertext, at a trickle.
GRANT ALL PRIVILEGES ON public.patients, public.consultations TO ehr_admin;
