"""A hospital application's data access written as psycopg2 users write it, run through pgseal
by tests/tests/e2e/drivers_scripted.rs. Prints one tab-separated line per result.

Usage: python hospital_psycopg2.py DSN NIR_PREFIX   (NIR_PREFIX: 11 digits, unique per run)

psycopg2 interpolates parameters into the statement text on the client: a str becomes a quoted
literal, a datetime.date becomes '...'::date, an aware datetime '...'::timestamptz, all sent
with the simple query protocol.
"""

import datetime
import sys

import psycopg2
import psycopg2.extras

INSERT = (
    "INSERT INTO patients (nir, last_name, first_name, birth_date, city) "
    "VALUES (%s, %s, %s, %s, %s)"
)


def nir(body):
    """A valid NIR from its 13-digit body: the key is 97 - body mod 97."""
    return body + "%02d" % (97 - int(body) % 97)


def main():
    dsn, prefix = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(dsn)
    cur = conn.cursor()

    # Several rows in one statement (execute_values), a date as datetime.date.
    rows = [
        (nir(prefix + "%02d" % i), "Lefèvre-%d" % i, "Élodie", datetime.date(1992, 7, i), "Lyon")
        for i in (1, 2)
    ]
    psycopg2.extras.execute_values(
        cur,
        "INSERT INTO patients (nir, last_name, first_name, birth_date, city) VALUES %s",
        rows,
    )
    inserted = cur.rowcount
    # executemany, then one more whose date is a plain string (an untyped literal).
    cur.executemany(INSERT, [(nir(prefix + "03"), "Lefèvre-3", "Élodie", datetime.date(1992, 7, 3), "Lyon")])
    inserted += cur.rowcount
    cur.execute(INSERT, (nir(prefix + "04"), "Lefèvre-4", "Élodie", "1992-07-04", "Lyon"))
    inserted += cur.rowcount
    conn.commit()
    print("inserted\t%d" % inserted)

    # A consultation with an aware datetime (timestamptz), read back.
    cur.execute("SELECT id FROM patients WHERE nir = %s", (nir(prefix + "01"),))
    (patient_id,) = cur.fetchone()
    paris = datetime.timezone(datetime.timedelta(hours=1))
    cur.execute(
        "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes) VALUES (%s, %s, %s, %s)",
        (patient_id, datetime.datetime(2024, 3, 1, 9, 30, tzinfo=paris), "E11.9", "Suivi diabète"),
    )
    conn.commit()
    cur.execute(
        "SELECT seen_at, diagnosis_code, notes FROM consultations WHERE patient_id = %s",
        (patient_id,),
    )
    for seen_at, code, notes in cur.fetchall():
        utc = seen_at.astimezone(datetime.timezone.utc)
        print("consultation\t%s\t%s\t%s" % (utc.strftime("%Y-%m-%dT%H:%M:%SZ"), code, notes))

    # Lookups by NIR and by last name, many times.
    for rnd in range(8):
        i = 1 + rnd % 4
        cur.execute(
            "SELECT last_name, first_name, birth_date FROM patients WHERE nir = %s",
            (nir(prefix + "%02d" % i),),
        )
        for last, first, birth in cur.fetchall():
            print("nir\t%d\t%s\t%s\t%s" % (rnd, last, first, birth.isoformat()))
        cur.execute(
            "SELECT nir, birth_date FROM patients WHERE last_name = %s AND first_name = %s",
            ("Lefèvre-%d" % i, "Élodie"),
        )
        for found, birth in cur.fetchall():
            print("name\t%d\t%s\t%s" % (rnd, found, birth.isoformat()))
    conn.commit()

    # A statement pgseal refuses, then the same connection again.
    try:
        cur.execute("SELECT id FROM patients ORDER BY length(last_name)")
        print("refused\tnone")
    except psycopg2.Error as e:
        print("refused\t%s" % e.pgcode)
        conn.rollback()
    cur.execute(
        "SELECT count(*) FROM patients WHERE city = %s AND first_name = %s", ("Lyon", "Élodie")
    )
    print("count\t%d" % cur.fetchone()[0])
    conn.commit()

    # A transaction: the sealed date updated, committed, read back.
    cur.execute(
        "UPDATE patients SET birth_date = %s WHERE nir = %s",
        (datetime.date(1990, 1, 31), nir(prefix + "03")),
    )
    print("update\t%d" % cur.rowcount)
    conn.commit()
    cur.execute("SELECT birth_date FROM patients WHERE nir = %s", (nir(prefix + "03"),))
    print("date\t%s" % cur.fetchone()[0].isoformat())
    conn.commit()
    conn.close()


if __name__ == "__main__":
    main()
