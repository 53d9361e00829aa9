"""JSON Schema files for the events, generated from the msgspec structs.

Teams producing events in other languages validate against these files. Regenerate after
changing ``schemas/events.py``: ``uv run python -m schemas.jsonschema_export``; a test fails
while the checked-in files differ from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import orjson

from schemas.events import SIM_NEEDS_RUN_ID, TipFeedback, TipShown

OUT_DIR = Path(__file__).parent / "jsonschema"


def schemas() -> dict[str, bytes]:
    files = {}
    for model in (TipShown, TipFeedback):
        generated = msgspec.json.schema(model)
        definitions = generated["$defs"]
        root = definitions.pop(model.__name__)  # the event itself, not a $ref to it
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://tipstream.dev/schemas/{model.__name__}.v1.json",
            **root,
            **SIM_NEEDS_RUN_ID,
            **({"$defs": definitions} if definitions else {}),
        }
        files[f"{model.__name__}.v1.schema.json"] = (
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return files


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    for name, content in schemas().items():
        (OUT_DIR / name).write_bytes(content)
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
