"""A hospital application's data access written as SQLAlchemy 2.0 ORM users write it, run through
pgseal by tests/tests/e2e/orm.rs and compared with a plaintext twin of the database.

Usage: python hospital_sqlalchemy.py SEALED_URL TWIN_URL

SEALED_URL reaches the hospital example through pgseal (role ehr_app); TWIN_URL reaches another
database of the same schema and collation directly, where nothing is sealed and birth_date is a
date column. Both URLs are `postgresql://...`; each is used with two drivers: psycopg2 (the
default dialect: parameters interpolated on the client, simple queries) and psycopg 3
(`postgresql+psycopg://`: parameters bound on the server, the extended protocol).

The same generated patients and consultations go into both databases through ORM sessions (the
first half with psycopg2, the rest with psycopg 3; see insert() for what happens when pgseal
refuses SQLAlchemy's batched INSERT), then every query below runs through both drivers on both
databases and their results, lists of tuples in order, must be equal: PostgreSQL is the oracle.
Each query runs in a session of its own, so no object comes from an earlier query's identity
map. A query whose twin result is empty tests nothing and counts as a failure.

Prints only counts, labels and SQLSTATEs, never a value: one line `ok DRIVER LABEL ROWS` per
query that matched, `mismatch DRIVER LABEL ...` (row index only) or `error DRIVER LABEL SIDE
SQLSTATE ...` per one that did not, and `summary PASSED FAILED`; exits 1 when one failed.
"""

import datetime
import sys
from typing import List, Optional

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    String,
    Text,
    create_engine,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    contains_eager,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

from hospital_data import (
    CONSULTATION_COLUMNS,
    PATIENT_COLUMNS,
    PATIENTS,
    nir,
    patient_rows,
    row_of,
)
from twin_report import finish, report

DRIVERS = [("psycopg2", "postgresql+psycopg2://"), ("psycopg3", "postgresql+psycopg://")]
# What pgseal documents it refuses (README, "What pgseal evaluates"): the query must fail
# through pgseal with this SQLSTATE and succeed on the twin.
# joinedload with a LIMIT puts the sorted, limited patients in a subquery: pgseal evaluates
# sorts on sealed columns at a statement's top level only.
REFUSED = {"patients-joinedload-by-name": "0A000"}
PAGE = 20


class Base(DeclarativeBase):
    """The application's mapped classes."""


class Patient(Base):
    """public.patients, as the application sees it: birth_date is a date."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    nir: Mapped[str] = mapped_column(String(15), unique=True)
    last_name: Mapped[Optional[str]] = mapped_column(Text)
    first_name: Mapped[Optional[str]] = mapped_column(Text)
    birth_date: Mapped[Optional[datetime.date]]
    sex: Mapped[Optional[str]] = mapped_column(String(1))
    email: Mapped[Optional[str]] = mapped_column(Text)
    phone: Mapped[Optional[str]] = mapped_column(Text)
    address: Mapped[Optional[str]] = mapped_column(Text)
    postal_code: Mapped[Optional[str]] = mapped_column(String(5))
    city: Mapped[Optional[str]] = mapped_column(Text)
    gp_name: Mapped[Optional[str]] = mapped_column(Text)

    consultations: Mapped[List["Consultation"]] = relationship(
        back_populates="patient", order_by="Consultation.seen_at, Consultation.id"
    )

    def row(self):
        return row_of(self, PATIENT_COLUMNS)


class Consultation(Base):
    """public.consultations; diagnosis_code, notes and prescription are sealed."""

    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    seen_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True))
    diagnosis_code: Mapped[Optional[str]] = mapped_column(Text)
    notes: Mapped[Optional[str]] = mapped_column(Text)
    prescription: Mapped[Optional[str]] = mapped_column(Text)

    patient: Mapped[Patient] = relationship(back_populates="consultations")

    def row(self):
        return row_of(self, CONSULTATION_COLUMNS)


def patients():
    """The generated patients, each with its consultations, as mapped objects."""
    out = []
    for fields, consultations in patient_rows():
        p = Patient(**fields)
        p.consultations = [Consultation(**c) for c in consultations]
        out.append(p)
    return out


def queries():
    """(label, function of a Session returning a list of tuples), as an ORM user writes them."""
    q = []

    def patients_of(label, stmt):
        """A query of Patient objects, as rows."""
        q.append((label, lambda s: [p.row() for p in s.scalars(stmt)]))

    by_name = (Patient.last_name, Patient.first_name, Patient.id)
    by_id = (Patient.id,)

    # The patient list ordered by name, page by page, and its variants.
    for k in range(0, PATIENTS, PAGE):
        patients_of(
            "list-by-name-offset-%d" % k,
            select(Patient).order_by(*by_name).limit(PAGE).offset(k),
        )
    for k in (0, PAGE):
        patients_of(
            "list-by-name-desc-offset-%d" % k,
            select(Patient)
            .order_by(Patient.last_name.desc(), Patient.first_name.desc(), Patient.id.desc())
            .limit(PAGE)
            .offset(k),
        )
    patients_of(
        "list-nulls-first",
        select(Patient)
        .order_by(
            Patient.last_name.asc().nulls_first(), Patient.first_name.nulls_last(), Patient.id
        )
        .limit(PAGE),
    )
    patients_of(
        "list-desc-nulls-last",
        select(Patient)
        .order_by(
            Patient.last_name.desc().nulls_last(),
            Patient.first_name.desc().nulls_first(),
            Patient.id,
        )
        .limit(PAGE)
        .offset(PAGE // 2),
    )
    patients_of(
        "list-by-birth-date",
        select(Patient).order_by(Patient.birth_date, Patient.id).limit(PAGE),
    )
    patients_of("list-by-email", select(Patient).order_by(Patient.email, Patient.id))
    columns = select(Patient.id, Patient.first_name, Patient.city).order_by(
        Patient.first_name.desc(), Patient.id
    )
    q.append(("columns-by-first-name-desc", lambda s: [tuple(r) for r in s.execute(columns)]))

    # Keyset paging: the page after the first one, from the first page's last row.
    def keyset(s):
        first = s.execute(
            select(Patient.last_name, Patient.id)
            .where(Patient.last_name.is_not(None))
            .order_by(Patient.last_name, Patient.id)
            .limit(PAGE)
        ).all()
        last_name, last_id = first[-1]
        stmt = (
            select(Patient)
            .where(tuple_(Patient.last_name, Patient.id) > tuple_(last_name, last_id))
            .order_by(Patient.last_name, Patient.id)
            .limit(PAGE)
        )
        return [tuple(r) for r in first] + [p.row() for p in s.scalars(stmt)]

    q.append(("keyset-page-2", keyset))

    # Case-insensitive search, as search boxes do.
    patients_of(
        "ilike-contains",
        select(Patient).where(Patient.last_name.ilike("%dup%")).order_by(*by_id),
    )
    patients_of(
        "not-ilike",
        select(Patient).where(Patient.last_name.not_ilike("%dup%")).order_by(*by_id),
    )
    for n, term in enumerate(["dup", "èvre", "d'a", "JEAN-"]):
        patients_of(
            "icontains-%d" % n,
            select(Patient)
            .where(or_(Patient.last_name.icontains(term), Patient.first_name.icontains(term)))
            .order_by(*by_id),
        )
    for n, term in enumerate(["dup", "é", "LEF"]):
        patients_of(
            "istartswith-%d" % n,
            select(Patient).where(Patient.last_name.istartswith(term)).order_by(*by_id),
        )
    for n, term in enumerate(["Dup", "Le", "É"]):
        patients_of(
            "startswith-%d" % n,
            select(Patient).where(Patient.last_name.startswith(term)).order_by(*by_id),
        )
    patients_of(
        "endswith",
        select(Patient).where(Patient.first_name.endswith("ie")).order_by(*by_id),
    )
    patients_of(
        "contains-autoescape",
        select(Patient).where(Patient.email.contains(".1@", autoescape=True)).order_by(*by_id),
    )
    patients_of(
        "lower-like",
        select(Patient).where(func.lower(Patient.first_name).like("%lod%")).order_by(*by_id),
    )
    patients_of(
        "ilike-sorted-by-name",
        select(Patient).where(Patient.first_name.ilike("%e%")).order_by(*by_name).limit(PAGE),
    )
    for n, term in enumerate(["mar", "dup", "lyon"]):
        pattern = "%" + term + "%"
        patients_of(
            "search-box-%d" % n,
            select(Patient)
            .where(
                or_(
                    Patient.last_name.ilike(pattern),
                    Patient.first_name.ilike(pattern),
                    Patient.email.ilike(pattern),
                    Patient.city.ilike(pattern),
                    Patient.gp_name.ilike(pattern),
                )
            )
            .order_by(*by_name)
            .limit(PAGE),
        )
    # Searching a related table: a patient found by a consultation's sealed notes, as
    # relationship.any() (a correlated EXISTS) and as an IN subquery in a search box.
    patients_of(
        "search-consultation-notes-any",
        select(Patient)
        .where(Patient.consultations.any(Consultation.notes.ilike("%tension%")))
        .order_by(*by_name),
    )
    patients_of(
        "search-box-with-notes-in",
        select(Patient)
        .where(
            or_(
                Patient.last_name.ilike("%mar%"),
                Patient.id.in_(
                    select(Consultation.patient_id).where(Consultation.notes.ilike("%CONTRÔLE%"))
                ),
            )
        )
        .order_by(*by_id),
    )
    patients_of(
        "not-in-notes",
        select(Patient)
        .where(
            Patient.id.not_in(
                select(Consultation.patient_id).where(Consultation.notes.ilike("%tension%"))
            )
        )
        .order_by(*by_id),
    )
    patients_of(
        "no-consultation-with-code",
        select(Patient)
        .where(~Patient.consultations.any(Consultation.diagnosis_code.ilike("e11%")))
        .order_by(*by_id)
        .limit(PAGE),
    )
    patients_of(
        "search-in-city",
        select(Patient)
        .where(Patient.city == "Lyon", Patient.last_name.icontains("e"))
        .order_by(Patient.first_name, Patient.id),
    )

    # Lookups by date.
    day, other = datetime.date(1985, 5, 17), datetime.date(1943, 7, 14)
    patients_of(
        "birth-date-equal",
        select(Patient).where(Patient.birth_date == day).order_by(*by_id),
    )
    patients_of(
        "birth-date-between",
        select(Patient)
        .where(Patient.birth_date.between(datetime.date(1985, 1, 1), datetime.date(1999, 12, 31)))
        .order_by(Patient.birth_date, Patient.id),
    )
    patients_of(
        "birth-date-after",
        select(Patient).where(Patient.birth_date >= datetime.date(2000, 1, 1)).order_by(*by_id),
    )
    patients_of(
        "birth-date-null",
        select(Patient).where(Patient.birth_date.is_(None)).order_by(*by_id),
    )
    patients_of(
        "birth-date-in",
        select(Patient).where(Patient.birth_date.in_([day, other])).order_by(*by_id),
    )

    # Lookups by lists of names, and equality.
    names = ["Dupont", "Lefèvre", "O'Brien", "Zola"]
    patients_of(
        "last-name-in",
        select(Patient).where(Patient.last_name.in_(names)).order_by(*by_name),
    )
    patients_of(
        "last-name-not-in",
        select(Patient).where(Patient.last_name.not_in(names)).order_by(*by_name),
    )
    patients_of(
        "last-name-equal",
        select(Patient).where(Patient.last_name == "Dupont").order_by(*by_id),
    )
    q.append(("get-by-id", lambda s: [s.get(Patient, 5).row()]))
    q.append(
        ("filter-by-nir", lambda s: [s.scalars(select(Patient).filter_by(nir=nir(7))).one().row()])
    )

    # Relationships: consultations with their patient, ordered by the patient's name.
    def consultation_list(s):
        stmt = (
            select(Consultation)
            .join(Consultation.patient)
            .options(contains_eager(Consultation.patient))
            .order_by(Patient.last_name, Patient.first_name, Consultation.seen_at, Consultation.id)
        )
        return [c.row() + c.patient.row() for c in s.scalars(stmt)]

    q.append(("consultations-by-patient-name", consultation_list))

    def consultations_with_code(s):
        stmt = (
            select(Consultation)
            .join(Consultation.patient)
            .where(Consultation.diagnosis_code.ilike("e11%"))
            .order_by(Patient.last_name.desc(), Consultation.id)
        )
        return [c.row() + (c.patient.last_name,) for c in s.scalars(stmt)]

    q.append(("consultations-by-code-lazy-patient", consultations_with_code))

    def patients_selectin(s):
        stmt = (
            select(Patient)
            .options(selectinload(Patient.consultations))
            .order_by(*by_name)
            .limit(PAGE)
        )
        return [p.row() + tuple(c.row() for c in p.consultations) for p in s.scalars(stmt)]

    q.append(("patients-selectinload-by-name", patients_selectin))

    def patients_joined(s):
        stmt = (
            select(Patient)
            .options(joinedload(Patient.consultations))
            .order_by(*by_name)
            .limit(PAGE)
        )
        return [p.row() + tuple(c.row() for c in p.consultations) for p in s.scalars(stmt).unique()]

    q.append(("patients-joinedload-by-name", patients_joined))

    # Server-side cursors over statements pgseal evaluates: SQLAlchemy's yield_per and
    # stream_results (a named cursor of psycopg2, a ServerCursor of psycopg 3), and the
    # driver's own named cursor read in fetchmany chunks.
    patients_of(
        "yield-per-by-name",
        select(Patient).order_by(*by_name).execution_options(yield_per=7),
    )
    streamed = (
        select(Patient.id, Patient.last_name)
        .where(Patient.last_name.ilike("%e%"))
        .order_by(Patient.last_name.desc(), Patient.id)
        .execution_options(stream_results=True, max_row_buffer=5)
    )
    q.append(("stream-results-ilike", lambda s: [tuple(r) for r in s.execute(streamed)]))

    def named_cursor(s):
        connection = s.connection().connection.dbapi_connection
        cursor = connection.cursor(name="pgseal_named")
        try:
            cursor.itersize = 3
            cursor.execute(
                "SELECT id, last_name, first_name FROM patients "
                "WHERE first_name ILIKE '%e%' ORDER BY first_name, id"
            )
            rows = cursor.fetchmany(1) + cursor.fetchmany(4) + [tuple(r) for r in cursor]
            return [tuple(r) for r in rows]
        finally:
            cursor.close()

    q.append(("driver-named-cursor", named_cursor))
    return q


def failure(e):
    """The SQLSTATE of a database error, with the message of a refusal (0A000: pgseal's, which
    names columns, never values), or the class of another error: never a statement, a parameter
    or a server message that could quote a value."""
    if not isinstance(e, DBAPIError):
        return "-\t%s" % type(e).__name__
    orig = e.orig
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None) or "-"
    message = type(orig).__name__
    if code == "0A000":
        message = getattr(getattr(orig, "diag", None), "message_primary", None) or message
    return "%s\t%s" % (code, message)


def insert(url, driver, scheme, engines, half):
    """Adds half of the generated patients, with their consultations, to each database through
    an ORM session. Returns the labels of the ways that failed through pgseal.

    The first way is SQLAlchemy's default (a flush of many objects is one "insertmanyvalues"
    INSERT ... SELECT ... FROM (VALUES ...) ORDER BY ... RETURNING). When pgseal refuses it, the
    failure is reported and the rows go in one INSERT ... RETURNING each
    (use_insertmanyvalues=False), so that the queries still run on the same data."""

    def add(engine):
        rows = patients()
        with Session(engine) as s:
            s.add_all(rows[: PATIENTS // 2] if half == 0 else rows[PATIENTS // 2 :])
            s.commit()

    sealed, twin = engines
    add(twin)
    try:
        add(sealed)
        return []
    except DBAPIError as e:
        print("error\t%s\tinsert-add-all\tsealed\t%s" % (driver, failure(e)))
    one_by_one = create_engine(
        url.replace("postgresql://", scheme, 1), hide_parameters=True, use_insertmanyvalues=False
    )
    try:
        add(one_by_one)
    finally:
        one_by_one.dispose()
    return ["insert-add-all"]


def compare(driver, label, run, engines):
    """Runs one query on both databases; prints and returns whether the results are equal."""
    results = []
    refusals = {}
    for side, engine in zip(("sealed", "twin"), engines):
        with Session(engine) as s:
            try:
                results.append(run(s))
            except Exception as e:  # an ORM error too (NoResultFound...): reported, not raised
                if side == "sealed" and label in REFUSED and isinstance(e, DBAPIError):
                    orig = e.orig
                    refusals[label] = getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)
                else:
                    print("error\t%s\t%s\t%s\t%s" % (driver, label, side, failure(e)))
                results.append(None)
    sealed, twin = results
    if label in REFUSED:
        if refusals.get(label) == REFUSED[label] and twin:
            print("refused-as-documented\t%s\t%s" % (driver, label))
            return True
        return False
    return report(driver, label, sealed, twin)


def main():
    sealed_url, twin_url = sys.argv[1], sys.argv[2]
    engines = {
        driver: [
            create_engine(url.replace("postgresql://", scheme, 1), hide_parameters=True)
            for url in (sealed_url, twin_url)
        ]
        for driver, scheme in DRIVERS
    }
    passed, failed = 0, []
    # Half of the patients through each driver, then every query through each.
    for half, (driver, scheme) in enumerate(DRIVERS):
        try:
            failed += [
                (driver, label)
                for label in insert(sealed_url, driver, scheme, engines[driver], half)
            ]
            print("inserted\t%s\t%d" % (driver, PATIENTS // 2))
        except Exception as e:
            print("error\t%s\tinsert\t%s" % (driver, failure(e)))
            failed.append((driver, "insert"))
    for driver, _ in DRIVERS:
        for label, run in queries():
            if compare(driver, label, run, engines[driver]):
                passed += 1
            else:
                failed.append((driver, label))
    for pair in engines.values():
        for engine in pair:
            engine.dispose()
    finish(passed, failed)


if __name__ == "__main__":
    main()
