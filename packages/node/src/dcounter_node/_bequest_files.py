"""The bequest files in a data directory, read back (written by the bequest service).

``bequests.json`` holds what this node holds as an heir (``held`` rows), ``bequest.json``
what it gave (``given`` rows) and the ids its data directory counted under (``own``). Rows
of the first version (final bequests only) still load.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from dcounter_node._bequest import Bequeathed, Bequest, Given, Heirloom
from dcounter_node._errors import StorageError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["GIVEN_FILENAME", "HELD_FILENAME", "load_bequests"]

#: What this node bequeathed (the leaving side).
GIVEN_FILENAME: Final = "bequest.json"
#: What this node holds as an heir.
HELD_FILENAME: Final = "bequests.json"


def _rows(path: Path, key: str) -> tuple[list[list[Any]], list[str]]:
    """The rows kept under ``key`` in ``path`` (none if it does not exist), and the ids
    listed under ``"own"`` (``bequest.json``: the ids its data directory counted under)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the bequests: {exc}") from None
    except ValueError as exc:
        raise StorageError(f"{path}: the bequests are corrupt: {exc!r}") from None
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise StorageError(f"{path}: the bequests are corrupt: no list of rows {key!r}")
    ids = data.get("own", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise StorageError(f"{path}: the bequests are corrupt: 'own' is no list of ids")
    return rows, ids


def _bequest(row: list[Any]) -> Bequest:
    # [victim, p, n, received] (a final bequest) or [..., owner, standing]
    victim, p, n, received, *rest = row
    owner, standing = rest if rest else ("", False)
    if len(rest) not in (0, 2):
        raise ValueError(f"a held bequest has 4 or 6 items, not {len(row)}")
    return Bequest(str(victim), (int(p), int(n)), float(received), bool(standing), str(owner))


def _given(row: list[Any]) -> Given:
    # [victim, heir, p, n, resumable] or [..., standing, confirmed]
    victim, heir, p, n, resumable, *rest = row
    standing, confirmed = rest if rest else (False, True)
    if len(rest) not in (0, 2):
        raise ValueError(f"a given bequest has 5 or 7 items, not {len(row)}")
    return Given(
        str(victim), str(heir), (int(p), int(n)), bool(resumable), bool(standing), bool(confirmed)
    )


def load_bequests(directory: Path | None) -> tuple[Heirloom, Bequeathed]:
    """What ``directory`` keeps (None: in memory): the bequests held and given, and the
    ids this directory counted under; StorageError if unusable."""
    if directory is None:
        return Heirloom(), Bequeathed()
    held, _ = _rows(directory / HELD_FILENAME, "held")
    given, own = _rows(directory / GIVEN_FILENAME, "given")
    try:
        return Heirloom(_bequest(row) for row in held), Bequeathed(
            (_given(row) for row in given), own
        )
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{directory}: the bequest files are corrupt: {exc!r}") from None
