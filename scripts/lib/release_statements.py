"""Prints `prepare` statements for every query of a release's .sqlx/ data (argument: the
commit), typed as sqlx described them, and a last line `-- N statements`."""

import json
import subprocess
import sys

release = sys.argv[1]
files = subprocess.run(["git", "ls-tree", "--name-only", release, ".sqlx/"],
                       check=True, capture_output=True, text=True).stdout.split()
for n, name in enumerate(files, 1):
    query = json.loads(subprocess.run(["git", "show", f"{release}:{name}"],
                                      check=True, capture_output=True, text=True).stdout)
    types = ", ".join(t.lower() for t in query["describe"]["parameters"].get("Left", []))
    signature = f" ({types})" if types else ""
    print(f"prepare statement_{n}{signature} as {query['query']};")
print(f"-- {len(files)} statements")
