"""A hospital application's data access written as Django ORM users write it, run through pgseal
by tests/tests/e2e/orm.rs and compared with a plaintext twin of the database.

Usage: python hospital_django.py SEALED_URL TWIN_URL

SEALED_URL reaches the hospital example through pgseal (role ehr_app); TWIN_URL reaches another
database of the same schema and collation directly, where nothing is sealed and birth_date is a
date column. Django's PostgreSQL backend runs on psycopg 3 in two ways: its default (parameters
bound on the client, `client`) and `server_side_binding` (bound on the server, the extended
protocol, `server`). Each writes half of the generated patients (hospital_data.py) through the
ORM (bulk_create, save), then every query below runs through both ways on both databases, and
their results, lists of tuples in order, must be equal: PostgreSQL is the oracle. A query whose
twin result is empty tests nothing and counts as a failure.

Prints only counts, labels and SQLSTATEs, never a value: `ok WAY LABEL ROWS` per query that
matched, `refused-as-documented WAY LABEL` for one pgseal documents it refuses (REFUSED),
`mismatch WAY LABEL ...` (row index only) or `error WAY LABEL SIDE SQLSTATE ...` per one that did
not, and `summary PASSED FAILED`; exits 1 when one failed.
"""

import datetime
import sys
import tempfile
import types
import urllib.parse

import django
from django.conf import settings

from hospital_data import (
    CONSULTATION_COLUMNS,
    PATIENT_COLUMNS,
    PATIENTS,
    nir,
    patient_rows,
    row_of,
)
from twin_report import finish, report

WAYS = [("client", False), ("server", True)]
PAGE = 20
# What pgseal documents it refuses (README, "What pgseal evaluates itself"): the query must
# fail through pgseal with this SQLSTATE and succeed on the twin.
# None left: annotate(Count(...)) ordered by a sealed name (GROUP BY, pgseal sorting the
# groups) now answers as the twin does.
REFUSED = {}


def database(url, server_side_binding):
    """Django's settings for a `postgresql://user:password@host:port/name` URL."""
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": urllib.parse.unquote(parts.username),
        "PASSWORD": urllib.parse.unquote(parts.password),
        "HOST": parts.hostname,
        "PORT": parts.port,
        "OPTIONS": {"sslmode": "disable", "server_side_binding": server_side_binding},
    }


def configure(sealed_url, twin_url):
    """Four connections: each way, to each database."""
    databases = {"default": database(twin_url, False)}
    for way, binding in WAYS:
        databases["sealed-" + way] = database(sealed_url, binding)
        databases["twin-" + way] = database(twin_url, binding)
    # The models' application, registered so that reverse relations resolve in lookups
    # (exclude(consultations__…)): a module of its own, with nothing on disk to import.
    app = types.ModuleType("hospital")
    app.__path__ = [tempfile.mkdtemp()]
    sys.modules["hospital"] = app
    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=["hospital"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def models():
    """The application's models (after django.setup()), as the schema of the hospital example."""
    from django.db import models as m

    class Patient(m.Model):
        nir = m.CharField(max_length=15, unique=True)
        last_name = m.TextField(null=True)
        first_name = m.TextField(null=True)
        birth_date = m.DateField(null=True)
        sex = m.CharField(max_length=1, null=True)
        email = m.TextField(null=True)
        phone = m.TextField(null=True)
        address = m.TextField(null=True)
        postal_code = m.CharField(max_length=5, null=True)
        city = m.TextField(null=True)
        gp_name = m.TextField(null=True)

        class Meta:
            app_label = "hospital"
            db_table = "patients"
            # Managed, as an application's own models are (the script never migrates): Django
            # then groups an annotate() by the primary key alone on PostgreSQL.

        def row(self):
            return row_of(self, PATIENT_COLUMNS)

    class Consultation(m.Model):
        patient = m.ForeignKey(Patient, m.CASCADE, related_name="consultations")
        seen_at = m.DateTimeField()
        diagnosis_code = m.TextField(null=True)
        notes = m.TextField(null=True)
        prescription = m.TextField(null=True)

        class Meta:
            app_label = "hospital"
            db_table = "consultations"

        def row(self):
            return row_of(self, CONSULTATION_COLUMNS)

    return Patient, Consultation


def insert(way, side, half, Patient, Consultation):
    """Writes half of the generated patients through `side` and `way`: the patients in one
    bulk_create, their consultations one save() each. Returns the labels of the ways that
    failed through pgseal.

    bulk_create is Django's INSERT … SELECT * FROM UNNEST(%s::type[], …) RETURNING id (one
    array per column, its elements sealed one by one). When pgseal refuses it, the failure is
    reported and the patients go in one save() each (INSERT … VALUES (…) RETURNING id), so
    that the queries still run on the same data."""
    from django.db import DatabaseError, transaction

    alias = "%s-%s" % (side, way)
    rows = patient_rows()
    rows = rows[: PATIENTS // 2] if half == 0 else rows[PATIENTS // 2 :]
    failed = []
    try:
        with transaction.atomic(using=alias):
            created = Patient.objects.using(alias).bulk_create(
                [Patient(**fields) for fields, _ in rows]
            )
        if side == "sealed":
            print("ok\t%s\tinsert-bulk-create\t%d" % (way, len(created)))
    except DatabaseError as e:
        if side == "twin":
            raise
        print("error\t%s\tinsert-bulk-create\tsealed\t%s" % (way, failure(e)))
        failed.append("insert-bulk-create")
        created = []
        for fields, _ in rows:
            patient = Patient(**fields)
            patient.save(using=alias)
            created.append(patient)
    for patient, (_, consultations) in zip(created, rows):
        for fields in consultations:
            Consultation(patient=patient, **fields).save(using=alias)
    return failed


def queries(Patient, Consultation):
    """(label, function of a database alias returning a list of tuples), as Django users write
    them."""
    from django.core.paginator import Paginator
    from django.db.models import Count, Exists, F, OuterRef, Q
    from django.db.models.functions import Lower

    q = []

    def patients_of(label, queryset):
        """A queryset of patients (a function of the alias), as rows."""
        q.append((label, lambda alias: [p.row() for p in queryset(alias)]))

    def objects(alias):
        return Patient.objects.using(alias)

    by_name = ("last_name", "first_name", "id")

    # The patient list ordered by name, page by page (a slice is LIMIT/OFFSET).
    for k in range(0, PATIENTS, PAGE):
        patients_of(
            "list-by-name-offset-%d" % k,
            lambda a, k=k: objects(a).order_by(*by_name)[k : k + PAGE],
        )
    patients_of(
        "list-by-name-desc",
        lambda a: objects(a).order_by("-last_name", "-first_name", "-id")[:PAGE],
    )
    patients_of(
        "list-nulls-first",
        lambda a: objects(a).order_by(
            F("last_name").asc(nulls_first=True), F("first_name").desc(nulls_last=True), "id"
        )[:PAGE],
    )
    patients_of("list-by-lower-name", lambda a: objects(a).order_by(Lower("last_name"), "id"))
    patients_of("list-by-birth-date", lambda a: objects(a).order_by("birth_date", "id")[:PAGE])

    # Django's search lookups: UPPER(col::text) LIKE UPPER(%s), and their variants.
    for n, term in enumerate(["dup", "èvre", "d'a", "JEAN-"]):
        patients_of(
            "icontains-%d" % n,
            lambda a, t=term: objects(a)
            .filter(Q(last_name__icontains=t) | Q(first_name__icontains=t))
            .order_by("id"),
        )
    for n, term in enumerate(["dup", "é", "LEF"]):
        patients_of(
            "istartswith-%d" % n,
            lambda a, t=term: objects(a).filter(last_name__istartswith=t).order_by("id"),
        )
    patients_of("iexact", lambda a: objects(a).filter(last_name__iexact="dupont").order_by("id"))
    patients_of("startswith", lambda a: objects(a).filter(last_name__startswith="Dup").order_by("id"))
    patients_of("endswith", lambda a: objects(a).filter(first_name__iendswith="IE").order_by("id"))
    patients_of("contains-escaped", lambda a: objects(a).filter(email__contains=".1@").order_by("id"))
    patients_of(
        "exclude-icontains",
        lambda a: objects(a).exclude(last_name__icontains="dup").order_by("id"),
    )
    for n, term in enumerate(["mar", "dup", "lyon"]):
        patients_of(
            "search-box-%d" % n,
            lambda a, t=term: objects(a)
            .filter(
                Q(last_name__icontains=t)
                | Q(first_name__icontains=t)
                | Q(email__icontains=t)
                | Q(city__icontains=t)
                | Q(gp_name__icontains=t)
            )
            .order_by(*by_name)[:PAGE],
        )
    # A search sorted by id, a page at a time (pgseal filters, the server orders).
    for k in (0, 5):
        patients_of(
            "search-by-id-offset-%d" % k,
            lambda a, k=k: objects(a).filter(first_name__icontains="e").order_by("id")[k : k + 5],
        )

    # Counting and existence, as list pages and forms do.
    q.append(
        ("count-icontains", lambda a: [(objects(a).filter(last_name__icontains="e").count(),)])
    )
    q.append(
        ("exists-istartswith", lambda a: [(objects(a).filter(last_name__istartswith="zol").exists(),)])
    )

    def paginated(alias):
        pages = Paginator(objects(alias).filter(first_name__icontains="e").order_by(*by_name), 7)
        page = pages.page(2)
        return [(pages.count, pages.num_pages)] + [p.row() for p in page]

    q.append(("paginator-page-2", paginated))

    # Lookups: get() (LIMIT 21), first(), dates, lists.
    q.append(("get-by-nir", lambda a: [objects(a).get(nir=nir(7)).row()]))
    q.append(
        ("first-by-name", lambda a: [objects(a).filter(last_name__icontains="a").first().row()])
    )
    day, other = datetime.date(1985, 5, 17), datetime.date(1943, 7, 14)
    patients_of("birth-date-equal", lambda a: objects(a).filter(birth_date=day).order_by("id"))
    patients_of(
        "birth-date-range",
        lambda a: objects(a)
        .filter(birth_date__range=(datetime.date(1985, 1, 1), datetime.date(1999, 12, 31)))
        .order_by("birth_date", "id"),
    )
    patients_of(
        "birth-date-year", lambda a: objects(a).filter(birth_date__year=1985).order_by("id")
    )
    patients_of(
        "birth-date-isnull", lambda a: objects(a).filter(birth_date__isnull=True).order_by("id")
    )
    patients_of(
        "birth-date-in", lambda a: objects(a).filter(birth_date__in=[day, other]).order_by("id")
    )
    names = ["Dupont", "Lefèvre", "O'Brien", "Zola"]
    patients_of("last-name-in", lambda a: objects(a).filter(last_name__in=names).order_by(*by_name))
    patients_of("last-name-exclude-in", lambda a: objects(a).exclude(last_name__in=names).order_by(*by_name))
    q.append(
        (
            "distinct-last-names",
            lambda a: [
                (n,)
                for n in objects(a)
                .filter(last_name__icontains="e")
                .order_by("last_name")
                .values_list("last_name", flat=True)
                .distinct()
            ],
        )
    )

    # Relationships.
    q.append(
        (
            "select-related-by-patient-name",
            lambda a: [
                c.row() + c.patient.row()
                for c in Consultation.objects.using(a)
                .select_related("patient")
                .order_by("patient__last_name", "patient__first_name", "seen_at", "id")
            ],
        )
    )
    q.append(
        (
            "prefetch-related-by-name",
            lambda a: [
                p.row() + tuple(c.row() for c in p.consultations.order_by("seen_at", "id"))
                for p in objects(a).prefetch_related("consultations").order_by(*by_name)[:PAGE]
            ],
        )
    )
    patients_of(
        "exists-consultation-notes",
        lambda a: objects(a)
        .filter(
            Exists(
                Consultation.objects.using(a).filter(
                    patient=OuterRef("pk"), notes__icontains="tension"
                )
            )
        )
        .order_by(*by_name),
    )
    patients_of(
        "exclude-consultation-code",
        lambda a: objects(a)
        .exclude(consultations__diagnosis_code__istartswith="e11")
        .order_by("id")[:PAGE],
    )
    q.append(
        (
            "annotate-count-by-name",
            lambda a: [
                p.row() + (p.n,)
                for p in objects(a).annotate(n=Count("consultations")).order_by(*by_name)
            ],
        )
    )

    # Server-side cursors: iterator() reads a named cursor in chunks.
    q.append(
        (
            "iterator-by-name",
            lambda a: [p.row() for p in objects(a).order_by(*by_name).iterator(chunk_size=7)],
        )
    )
    q.append(
        (
            "iterator-icontains",
            lambda a: [
                p.row()
                for p in objects(a)
                .filter(last_name__icontains="e")
                .order_by("-last_name", "id")
                .iterator(chunk_size=5)
            ],
        )
    )
    return q


def failure(e):
    """The SQLSTATE of a database error, with the message of a refusal (0A000: pgseal's, which
    names columns, never values), or the class of another error: never a statement, a parameter
    or a server message that could quote a value."""
    code = getattr(getattr(e, "__cause__", None), "sqlstate", None)
    if code is None:
        return "-\t%s" % type(e).__name__
    message = type(e).__name__
    if code == "0A000":
        diag = getattr(e.__cause__, "diag", None)
        message = getattr(diag, "message_primary", None) or message
    return "%s\t%s" % (code, message)


def compare(way, label, run):
    """Runs one query on both databases; prints and returns whether the results are equal."""
    from django.db import DatabaseError

    results, refused = [], None
    for side in ("sealed", "twin"):
        try:
            results.append(run("%s-%s" % (side, way)))
        except Exception as e:  # an ORM error too (DoesNotExist...): reported, not raised
            cause = getattr(e, "__cause__", None)
            if side == "sealed" and label in REFUSED and isinstance(e, DatabaseError):
                refused = getattr(cause, "sqlstate", None)
            else:
                print("error\t%s\t%s\t%s\t%s" % (way, label, side, failure(e)))
            results.append(None)
    sealed, twin = results
    if label in REFUSED:
        if refused == REFUSED[label] and twin:
            print("refused-as-documented\t%s\t%s" % (way, label))
            return True
        print("not-refused\t%s\t%s\t%s" % (way, label, refused))
        return False
    return report(way, label, sealed, twin)


def main():
    configure(sys.argv[1], sys.argv[2])
    Patient, Consultation = models()
    passed, failed = 0, []
    for half, (way, _) in enumerate(WAYS):
        for side in ("sealed", "twin"):
            try:
                failures = insert(way, side, half, Patient, Consultation)
                failed += [(way, label) for label in failures]
                if side == "sealed" and not failures:
                    passed += 1
            except Exception as e:
                print("error\t%s\tinsert\t%s\t%s" % (way, side, failure(e)))
                failed.append((way, "insert-" + side))
        print("inserted\t%s\t%d" % (way, PATIENTS // 2))
    for way, _ in WAYS:
        for label, run in queries(Patient, Consultation):
            if compare(way, label, run):
                passed += 1
            else:
                failed.append((way, label))
    finish(passed, failed)


if __name__ == "__main__":
    main()
