"""How the ORM scripts (hospital_sqlalchemy.py, hospital_django.py) report one query's results
through pgseal against the plaintext twin's: only labels, counts and row indexes, never a
value."""

import sys


def report(way, label, sealed, twin):
    """Prints and returns whether the results (lists of tuples, in order; None when the query
    failed, which was reported already) are equal. An empty twin result tests nothing and is a
    failure."""
    if sealed is None or twin is None:
        return False
    if not twin:
        print("empty\t%s\t%s" % (way, label))
        return False
    if sealed != twin:
        first = next(
            (i for i, (a, b) in enumerate(zip(sealed, twin)) if a != b),
            min(len(sealed), len(twin)),
        )
        print(
            "mismatch\t%s\t%s\trows %d vs %d\tfirst difference at row %d"
            % (way, label, len(sealed), len(twin), first)
        )
        return False
    print("ok\t%s\t%s\t%d" % (way, label, len(twin)))
    return True


def finish(passed, failed):
    """Prints the summary line (and the failed labels on stderr), and exits 1 when one failed."""
    print("summary\t%d\t%d" % (passed, len(failed)))
    if failed:
        print("failed: " + ", ".join("%s/%s" % f for f in failed), file=sys.stderr)
        sys.exit(1)
