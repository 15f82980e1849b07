"""Write docs/sql/: every statement of jobqueue/queries/ as it is sent, one file per module.

The statements are assembled in Python (the claim from its CTEs, per worker flavour), so the
text a reader needs, the claim that actually runs, is nowhere in the source as one piece. This
writes each module's complete statements (the module-level strings that are SQL and have no
``{placeholder}`` left) to ``docs/sql/<module>.sql``, in the module's order, each under a
``-- NAME`` line. The fragments they are built from are left out (those with a placeholder,
and those whose name starts with an underscore): they are in the module, with the reasoning.

    python scripts/write_sql.py            # write docs/sql/ (make sql)
    python scripts/write_sql.py --check    # exit 1 if docs/sql/ differs (tests/test_sql_files.py)
"""

import argparse
import ast
import importlib
import string
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "sql"
PACKAGE = ROOT / "jobqueue" / "queries"
KEYWORDS = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "LOCK", "COPY")


def is_statement(value: object) -> bool:
    """A complete statement: SQL text with no named ``str.format`` field left to fill."""
    if not isinstance(value, str) or not value.lstrip().upper().startswith(KEYWORDS):
        return False
    return not any(field for _, field, _, _ in string.Formatter().parse(value))


def assigned(path: Path) -> set[str]:
    """The names a module assigns at its top level (not those it imports)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def rendered() -> dict[str, str]:
    """File name -> contents, for every module of the package that holds a statement."""
    sys.path.insert(0, str(ROOT))
    files = {}
    for path in sorted(PACKAGE.glob("[!_]*.py")):
        module = importlib.import_module(f"jobqueue.queries.{path.stem}")
        own = assigned(path)
        statements = [
            (name, value.strip())
            for name, value in vars(module).items()
            if name in own and name.isupper() and not name.startswith("_") and is_statement(value)
        ]
        if not statements:
            continue
        header = (
            f"-- The statements of jobqueue/queries/{path.name}, as they are sent.\n"
            "-- Written by scripts/write_sql.py (make sql): edit the module, not this file.\n"
        )
        body = "".join(f"\n-- {name}\n{text};\n" for name, text in statements)
        files[f"{path.stem}.sql"] = header + body
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    check = parser.parse_args(argv).check
    files = rendered()
    present = {path.name: path.read_text() for path in OUT.glob("*.sql")} if OUT.exists() else {}
    if check:
        stale = sorted(n for n in files.keys() | present.keys() if files.get(n) != present.get(n))
        for name in stale:
            print(f"docs/sql/{name} differs from jobqueue/queries/: run make sql")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name in present.keys() - files.keys():
        (OUT / name).unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
