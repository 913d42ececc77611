"""A hospital application's data access written as psycopg 3 users write it, run through pgseal
by tests/tests/e2e/drivers_scripted.rs. Prints one tab-separated line per result.

Usage: python hospital_psycopg3.py CONNINFO NIR_PREFIX   (NIR_PREFIX: 11 digits, unique per run)

psycopg 3 binds parameters on the server (extended protocol): a str goes untyped in text, a
datetime.date as date; executemany runs in pipeline mode; a statement executed prepare_threshold
times (5) becomes a named prepared statement; binary=True asks for results in binary.
"""

import datetime
import sys

import psycopg

INSERT = (
    "INSERT INTO patients (nir, last_name, first_name, birth_date, city) "
    "VALUES (%s, %s, %s, %s, %s)"
)
BY_NIR = "SELECT last_name, first_name, birth_date FROM patients WHERE nir = %s"
BY_NAME = "SELECT nir, birth_date FROM patients WHERE last_name = %s AND first_name = %s"
REFUSED = "SELECT id FROM patients ORDER BY length(last_name)"


def nir(body):
    """A valid NIR from its 13-digit body: the key is 97 - body mod 97."""
    return body + "%02d" % (97 - int(body) % 97)


def main():
    conninfo, prefix = sys.argv[1], sys.argv[2]
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            # executemany (pipelined), dates as datetime.date; then one whose date is a str
            # (sent untyped) and one with binary parameters (a str goes as text).
            cur.executemany(
                INSERT,
                [
                    (nir(prefix + "%02d" % i), "Lefèvre-%d" % i, "Élodie", datetime.date(1992, 7, i), "Lyon")
                    for i in (1, 2)
                ],
            )
            inserted = cur.rowcount
            cur.execute(INSERT, (nir(prefix + "03"), "Lefèvre-3", "Élodie", "1992-07-03", "Lyon"))
            inserted += cur.rowcount
            cur.execute(
                INSERT,
                (nir(prefix + "04"), "Lefèvre-4", "Élodie", datetime.date(1992, 7, 4), "Lyon"),
                binary=True,
            )
            inserted += cur.rowcount
        conn.commit()
        print("inserted\t%d" % inserted)

        # A consultation with an aware datetime (timestamptz), read back.
        (patient_id,) = conn.execute(
            "SELECT id FROM patients WHERE nir = %s", (nir(prefix + "01"),)
        ).fetchone()
        paris = datetime.timezone(datetime.timedelta(hours=1))
        conn.execute(
            "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes) VALUES (%s, %s, %s, %s)",
            (patient_id, datetime.datetime(2024, 3, 1, 9, 30, tzinfo=paris), "E11.9", "Suivi diabète"),
        )
        conn.commit()
        for seen_at, code, notes in conn.execute(
            "SELECT seen_at, diagnosis_code, notes FROM consultations WHERE patient_id = %s",
            (patient_id,),
        ):
            utc = seen_at.astimezone(datetime.timezone.utc)
            print("consultation\t%s\t%s\t%s" % (utc.strftime("%Y-%m-%dT%H:%M:%SZ"), code, notes))

        # Lookups by NIR and by last name, many times: prepared after the fifth.
        with conn.cursor() as cur:
            for rnd in range(8):
                i = 1 + rnd % 4
                cur.execute(BY_NIR, (nir(prefix + "%02d" % i),))
                for last, first, birth in cur:
                    print("nir\t%d\t%s\t%s\t%s" % (rnd, last, first, birth.isoformat()))
                cur.execute(BY_NAME, ("Lefèvre-%d" % i, "Élodie"))
                for found, birth in cur:
                    print("name\t%d\t%s\t%s" % (rnd, found, birth.isoformat()))
            # The same lookup with results in binary.
            for rnd in range(6):
                i = 1 + rnd % 4
                cur.execute(BY_NIR, (nir(prefix + "%02d" % i),), binary=True)
                for last, first, birth in cur:
                    print("binary\t%d\t%s\t%s\t%s" % (rnd, last, first, birth.isoformat()))
        conn.commit()

        # A statement pgseal refuses, then the same connection again.
        try:
            conn.execute(REFUSED)
            print("refused\tnone")
        except psycopg.Error as e:
            print("refused\t%s" % e.sqlstate)
            conn.rollback()
        (count,) = conn.execute(
            "SELECT count(*) FROM patients WHERE city = %s AND first_name = %s", ("Lyon", "Élodie")
        ).fetchone()
        print("count\t%d" % count)
        conn.commit()

        # Pipeline mode: lookups, the refused statement in the middle, lookups after it.
        conn.autocommit = True
        with conn.pipeline() as p:
            before = conn.execute(BY_NIR, (nir(prefix + "01"),))
            p.sync()
            try:
                conn.execute(REFUSED)
                p.sync()
                print("pipeline-refused\tnone")
            except psycopg.Error as e:
                print("pipeline-refused\t%s" % e.sqlstate)
            after = conn.execute(BY_NAME, ("Lefèvre-2", "Élodie"))
            named = conn.execute(BY_NIR, (nir(prefix + "04"),), binary=True)
        for last, first, birth in before:
            print("pipeline\tbefore\t%s\t%s" % (last, birth.isoformat()))
        for found, birth in after:
            print("pipeline\tafter\t%s\t%s" % (found, birth.isoformat()))
        for last, first, birth in named:
            print("pipeline\tbinary\t%s\t%s" % (last, birth.isoformat()))
        conn.autocommit = False

        # A transaction: the sealed date updated, committed, read back.
        with conn.transaction():
            cur = conn.execute(
                "UPDATE patients SET birth_date = %s WHERE nir = %s",
                (datetime.date(1990, 1, 31), nir(prefix + "03")),
            )
            print("update\t%d" % cur.rowcount)
        (birth,) = conn.execute(
            "SELECT birth_date FROM patients WHERE nir = %s", (nir(prefix + "03"),)
        ).fetchone()
        print("date\t%s" % birth.isoformat())
        conn.commit()


if __name__ == "__main__":
    main()
