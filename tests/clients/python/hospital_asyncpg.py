"""A hospital application's data access written as asyncpg users write it, run through pgseal
by tests/tests/e2e/drivers_scripted.rs. Prints one tab-separated line per result.

Usage: python hospital_asyncpg.py DSN NIR_PREFIX   (NIR_PREFIX: 11 digits, unique per run)

asyncpg prepares every statement (Parse, Describe), encodes parameters in binary for the types
the server describes, and asks for results in binary; executemany pipelines its Binds.
"""

import asyncio
import datetime
import sys

import asyncpg

INSERT = (
    "INSERT INTO patients (nir, last_name, first_name, birth_date, city) "
    "VALUES ($1, $2, $3, $4, $5)"
)


def nir(body):
    """A valid NIR from its 13-digit body: the key is 97 - body mod 97."""
    return body + "%02d" % (97 - int(body) % 97)


async def main():
    dsn, prefix = sys.argv[1], sys.argv[2]
    conn = await asyncpg.connect(dsn)
    try:
        # executemany, dates as datetime.date; one more with RETURNING.
        await conn.executemany(
            INSERT,
            [
                (nir(prefix + "%02d" % i), "Lefèvre-%d" % i, "Élodie", datetime.date(1992, 7, i), "Lyon")
                for i in (1, 2, 3)
            ],
        )
        inserted = 3
        patient_id = await conn.fetchval(
            INSERT + " RETURNING id",
            nir(prefix + "04"), "Lefèvre-4", "Élodie", datetime.date(1992, 7, 4), "Lyon",
        )
        inserted += 1 if patient_id is not None else 0
        print("inserted\t%d" % inserted)

        # A consultation with an aware datetime (timestamptz), read back.
        patient_id = await conn.fetchval("SELECT id FROM patients WHERE nir = $1", nir(prefix + "01"))
        paris = datetime.timezone(datetime.timedelta(hours=1))
        await conn.execute(
            "INSERT INTO consultations (patient_id, seen_at, diagnosis_code, notes) VALUES ($1, $2, $3, $4)",
            patient_id, datetime.datetime(2024, 3, 1, 9, 30, tzinfo=paris), "E11.9", "Suivi diabète",
        )
        for r in await conn.fetch(
            "SELECT seen_at, diagnosis_code, notes FROM consultations WHERE patient_id = $1", patient_id
        ):
            utc = r["seen_at"].astimezone(datetime.timezone.utc)
            print("consultation\t%s\t%s\t%s" % (utc.strftime("%Y-%m-%dT%H:%M:%SZ"), r["diagnosis_code"], r["notes"]))

        # Lookups by NIR and by last name, many times (asyncpg's statement cache reuses them).
        for rnd in range(8):
            i = 1 + rnd % 4
            for r in await conn.fetch(
                "SELECT last_name, first_name, birth_date FROM patients WHERE nir = $1",
                nir(prefix + "%02d" % i),
            ):
                print("nir\t%d\t%s\t%s\t%s" % (rnd, r["last_name"], r["first_name"], r["birth_date"].isoformat()))
            for r in await conn.fetch(
                "SELECT nir, birth_date FROM patients WHERE last_name = $1 AND first_name = $2",
                "Lefèvre-%d" % i, "Élodie",
            ):
                print("name\t%d\t%s\t%s" % (rnd, r["nir"], r["birth_date"].isoformat()))
        # An explicitly prepared statement, bound several times.
        lookup = await conn.prepare("SELECT last_name, birth_date FROM patients WHERE nir = $1")
        for rnd in range(4):
            r = await lookup.fetchrow(nir(prefix + "%02d" % (1 + rnd)))
            print("binary\t%d\t%s\t%s" % (rnd, r["last_name"], r["birth_date"].isoformat()))

        # A statement pgseal refuses, then the same connection again.
        try:
            await conn.fetch("SELECT id FROM patients ORDER BY length(last_name)")
            print("refused\tnone")
        except asyncpg.PostgresError as e:
            print("refused\t%s" % e.sqlstate)
        count = await conn.fetchval(
            "SELECT count(*) FROM patients WHERE city = $1 AND first_name = $2", "Lyon", "Élodie"
        )
        print("count\t%d" % count)

        # A transaction: the sealed date updated, committed, read back.
        async with conn.transaction():
            status = await conn.execute(
                "UPDATE patients SET birth_date = $1 WHERE nir = $2",
                datetime.date(1990, 1, 31), nir(prefix + "03"),
            )
            print("update\t%s" % status.split()[-1])
        birth = await conn.fetchval("SELECT birth_date FROM patients WHERE nir = $1", nir(prefix + "03"))
        print("date\t%s" % birth.isoformat())
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
