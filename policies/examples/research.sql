-- Research extract: the schema behind research.toml.
--
-- A pseudonymized extract for a research team: subjects are identified by a pseudonym of their
-- NIR (irreversible, stable across the extract's tables), never by the NIR itself. Run it as a
-- superuser in the extract's database:
--
--     psql -v ON_ERROR_STOP=1 -d cohort -f policies/examples/research.sql
--
-- The NIR columns are sealed in pseudonym mode: pgseal stores a keyed hash of the NIR the loader
-- writes, so nobody — not the loader, not pgseal — can read a NIR back. Other sealed columns are
-- stored as text (randomized, deterministic) or keep their type (tokens). Roles are created only
-- when missing, with demo passwords equal to their names.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'research_etl') THEN
        CREATE ROLE research_etl LOGIN PASSWORD 'research_etl';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'research_analyst') THEN
        CREATE ROLE research_analyst LOGIN PASSWORD 'research_analyst';
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

CREATE SCHEMA IF NOT EXISTS research;

CREATE TABLE IF NOT EXISTS research.subjects (
    subject_nir    text PRIMARY KEY,          -- pseudonym of the NIR, domain research-subject
    birth_date     text,                      -- randomized; a date to the application
    sex            char(1),
    postal_code    varchar(5),                -- tokenize-digits
    inclusion_date text                       -- randomized; a date
);

CREATE TABLE IF NOT EXISTS research.events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_nir     text NOT NULL REFERENCES research.subjects (subject_nir), -- same domain
    event_date      text NOT NULL,            -- randomized; a date
    icd10_code      text,                     -- deterministic: counts by code work
    atc_code        varchar(7),               -- drug class, not sealed
    prescriber_rpps varchar(11),              -- tokenize-digits
    notes           text                      -- randomized
);

CREATE INDEX IF NOT EXISTS events_subject_idx ON research.events (subject_nir);

GRANT USAGE ON SCHEMA research TO research_etl, research_analyst;
GRANT SELECT, INSERT, UPDATE, DELETE ON research.subjects, research.events TO research_etl;
GRANT SELECT ON research.subjects, research.events TO research_analyst;
