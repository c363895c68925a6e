"""Prints the SQL block of docs/operations.md that contains the text given, for psql -f - with
its variables (-v name=value): scripts run the roles as the documents make them, so neither
can drift from the other (the Rust tests do the same: tests/support/docs.rs)."""
import sys

text = sys.argv[1]
blocks, current = [], None
for line in open("docs/operations.md", encoding="utf-8"):
    stripped = line.strip()
    if current is None and stripped == "```sql":
        current = []
    elif current is not None and stripped == "```":
        blocks.append("".join(current))
        current = None
    elif current is not None:
        current.append(line)
found = [block for block in blocks if text in block]
if not found:
    sys.exit(f"no SQL block of docs/operations.md contains {text!r}")
sys.stdout.write(found[0])
