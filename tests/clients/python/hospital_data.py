"""The generated hospital data both ORM scripts (hospital_sqlalchemy.py, hospital_django.py)
write through pgseal and into the plaintext twin: names with case variants, accents, hyphens,
apostrophes, spaces and NULLs, with ties between patients, always the same."""

import datetime

PATIENTS = 64
# The columns a mapped object's row() gives, in order, as both scripts compare them.
PATIENT_COLUMNS = (
    "id",
    "nir",
    "last_name",
    "first_name",
    "birth_date",
    "sex",
    "email",
    "phone",
    "address",
    "postal_code",
    "city",
    "gp_name",
)
CONSULTATION_COLUMNS = ("id", "patient_id", "seen_at", "diagnosis_code", "notes", "prescription")


def row_of(mapped, columns):
    """A mapped object's values for `columns`, as a tuple."""
    return tuple(getattr(mapped, c) for c in columns)

# Case variants, accents, hyphens, apostrophes, spaces and NULLs, with ties between patients.
LAST_NAMES = [
    "Dupont",
    "dupont",
    "DUPONT",
    "Dupond",
    "Du Pont",
    "Dupont-Aignan",
    "Lefèvre",
    "Lefevre",
    "LEFÈVRE",
    "Lefèbvre",
    "Éluard",
    "Eluard",
    "élie",
    "O'Brien",
    "d'Artagnan",
    "D'Arcy",
    "Martin",
    "martin",
    "Müller",
    "Œuvray",
    "Çelik",
    "N'Diaye",
    "Zola",
    None,
]
FIRST_NAMES = [
    "Élodie",
    "Elodie",
    "élodie",
    "Jean-Luc",
    "Jean Luc",
    "jean-luc",
    "Zoé",
    "Zoe",
    "Chloé",
    "Anaïs",
    "Ève",
    "Eve",
    "Marie-Hélène",
    "Noël",
    "Martin",
    None,
]
BIRTH_DATES = [
    datetime.date(1985, 5, 17),
    datetime.date(1990, 1, 31),
    datetime.date(1972, 12, 1),
    datetime.date(2001, 2, 28),
    datetime.date(1985, 5, 18),
    datetime.date(1999, 12, 31),
    datetime.date(2000, 1, 1),
    None,
    datetime.date(1943, 7, 14),
]
CITIES = ["Lyon", "Paris", "Saint-Étienne", "lyon", "Martigues", None]
GPS = ["Dr Dupuis", "Dr Martin", "Dr Élie", None]
STREETS = ["rue de l'Église", "avenue Jean-Jaurès", "place du Marché", "chemin des Dupont"]
CODES = ["E11.9", "I10", "J45.909", "e11.9", None]
NOTES = ["Suivi diabète", "Contrôle tension", "suivi DIABÈTE", None]


def nir(i):
    """A valid NIR for patient i: a 13-digit body and its key, 97 - body mod 97."""
    body = "%d8505751%02d%03d" % (1 + i % 2, i % 90, 1 + i)
    return body + "%02d" % (97 - int(body) % 97)


def patient_rows():
    """The generated patients as (fields, [consultation fields]) dicts, always the same."""
    out = []
    paris = datetime.timezone(datetime.timedelta(hours=1))
    for i in range(PATIENTS):
        last = LAST_NAMES[i % len(LAST_NAMES)]
        first = FIRST_NAMES[(i * 7) % len(FIRST_NAMES)]
        plain = "".join(c for c in (last or "x").lower() if c.isascii() and c.isalpha()) or "x"
        patient = dict(
            nir=nir(i),
            last_name=last,
            first_name=first,
            birth_date=BIRTH_DATES[(i * 5) % len(BIRTH_DATES)],
            sex="MF"[i % 2],
            email=(
                None
                if i % 6 == 0
                else ("%s.%d@Exemple.fr" if i % 4 else "%s.%d@exemple.fr") % (plain, i % 9)
            ),
            phone=None if i % 4 == 0 else "06 12 34 %02d %02d" % (i % 7, i % 5),
            address=None if i % 5 == 0 else "%d %s" % (1 + i % 11, STREETS[i % len(STREETS)]),
            postal_code="%05d" % (69000 + i % 3),
            city=CITIES[i % len(CITIES)],
            gp_name=GPS[(i * 3) % len(GPS)],
        )
        consultations = [
            dict(
                seen_at=datetime.datetime(
                    2024, 1 + (i + j) % 12, 1 + i % 28, 8 + j, 30, tzinfo=paris
                ),
                diagnosis_code=CODES[(i + j) % len(CODES)],
                notes=NOTES[(i * 3 + j) % len(NOTES)],
                prescription=None if (i + j) % 2 else "Metformine 1000 mg x%d/j" % (1 + j),
            )
            for j in range(i % 3)
        ]
        out.append((patient, consultations))
    return out
